"""The OAuth2 statements: clients, authorization codes, tokens."""

from __future__ import annotations

from sqlalchemy import (
    Select,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)

from hookstream.storage.tables import (
    oauth_clients,
    oauth_codes,
    oauth_tokens,
)

# --- OAuth2: clients, authorization codes, tokens -------------------------------------------
insert_oauth_client = insert(oauth_clients)
_client_cols = (
    oauth_clients.c.id,
    oauth_clients.c.org_id,
    oauth_clients.c.name,
    oauth_clients.c.secret_hash,
    oauth_clients.c.redirect_uris,
    oauth_clients.c.public,
    oauth_clients.c.created_at,
)
# The authorization server looks a client up by its id alone (the request names no org).
oauth_client_by_id = select(*_client_cols).where(
    oauth_clients.c.id == bindparam("id"), oauth_clients.c.deleted_at.is_(None)
)


def list_oauth_clients(org_id: str, after: str | None, limit: int) -> Select[tuple[object, ...]]:
    q = select(*_client_cols).where(
        oauth_clients.c.org_id == org_id, oauth_clients.c.deleted_at.is_(None)
    )
    if after:
        q = q.where(oauth_clients.c.id > after)
    return q.order_by(oauth_clients.c.id).limit(limit)


delete_oauth_client = (
    update(oauth_clients)
    .where(
        oauth_clients.c.org_id == bindparam("b_org_id"),
        oauth_clients.c.id == bindparam("b_id"),
        oauth_clients.c.deleted_at.is_(None),
    )
    .values(deleted_at=bindparam("b_now"))
)
revoke_client_tokens = (
    update(oauth_tokens)
    .where(
        oauth_tokens.c.client_id == bindparam("b_client_id"),
        oauth_tokens.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("b_now"))
)

insert_oauth_code = insert(oauth_codes)
oauth_code_by_hash = select(
    oauth_codes.c.code_hash,
    oauth_codes.c.client_id,
    oauth_codes.c.user_id,
    oauth_codes.c.org_id,
    oauth_codes.c.redirect_uri,
    oauth_codes.c.scope,
    oauth_codes.c.code_challenge,
    oauth_codes.c.code_challenge_method,
    oauth_codes.c.expires_at,
    oauth_codes.c.used_at,
).where(oauth_codes.c.code_hash == bindparam("code_hash"))
# A code is exchanged once: only the first of two concurrent exchanges changes the row.
use_oauth_code = (
    update(oauth_codes)
    .where(oauth_codes.c.code_hash == bindparam("b_code_hash"), oauth_codes.c.used_at.is_(None))
    .values(used_at=bindparam("b_now"))
)
delete_expired_oauth_codes = delete(oauth_codes).where(
    oauth_codes.c.expires_at <= bindparam("before")
)

insert_oauth_token = insert(oauth_tokens)
_token_cols = (
    oauth_tokens.c.id,
    oauth_tokens.c.family_id,
    oauth_tokens.c.client_id,
    oauth_tokens.c.user_id,
    oauth_tokens.c.org_id,
    oauth_tokens.c.scope,
    oauth_tokens.c.access_expires_at,
    oauth_tokens.c.refresh_expires_at,
    oauth_tokens.c.refresh_used_at,
    oauth_tokens.c.revoked_at,
)
oauth_token_by_access_hash = select(*_token_cols).where(
    oauth_tokens.c.access_hash == bindparam("hash")
)
oauth_token_by_refresh_hash = select(*_token_cols).where(
    oauth_tokens.c.refresh_hash == bindparam("hash")
)
# Rotation: a refresh token is spent once; only the first of two concurrent uses wins.
use_refresh_token = (
    update(oauth_tokens)
    .where(
        oauth_tokens.c.id == bindparam("b_id"),
        oauth_tokens.c.refresh_used_at.is_(None),
        oauth_tokens.c.revoked_at.is_(None),
    )
    .values(refresh_used_at=bindparam("b_now"))
)
revoke_token_family = (
    update(oauth_tokens)
    .where(
        oauth_tokens.c.family_id == bindparam("b_family_id"),
        oauth_tokens.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("b_now"))
)
# Retention: a token row is kept while either of its tokens could still be presented.
purge_expired_oauth_tokens = delete(oauth_tokens).where(
    oauth_tokens.c.access_expires_at <= bindparam("before"),
    or_(
        oauth_tokens.c.refresh_expires_at.is_(None),
        oauth_tokens.c.refresh_expires_at <= bindparam("before"),
    ),
)
