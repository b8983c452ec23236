"""Tenancy statements: organizations, gateways, connectors, triggers, console, audit, secrets."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from hookstream.storage.tables import (
    attempt_counts,
    attempts,
    audit_events,
    connectors,
    console_sessions,
    deliveries,
    gateways,
    messages,
    meta,
    metadata,
    organizations,
    trigger_gateways,
    triggers,
    users,
)

# --- meta -------------------------------------------------------------------------------
get_meta = select(meta.c.value).where(meta.c.key == bindparam("key"))
insert_meta = insert(meta)


# --- organizations ----------------------------------------------------------------------
insert_organization = insert(organizations)
# The current key, or the previous one until its overlap ends.
organization_by_key_hash = select(
    organizations.c.id,
    organizations.c.name,
    (organizations.c.api_key_hash == bindparam("key_hash")).label("current"),
).where(
    or_(
        organizations.c.api_key_hash == bindparam("key_hash"),
        and_(
            organizations.c.previous_api_key_hash == bindparam("key_hash"),
            organizations.c.previous_api_key_expires_at > bindparam("now"),
        ),
    )
)
rotate_organization_key = (
    update(organizations)
    .where(organizations.c.id == bindparam("b_id"))
    .values(
        previous_api_key_hash=organizations.c.api_key_hash,
        previous_api_key_expires_at=bindparam("b_until"),
        api_key_hash=bindparam("b_new_hash"),
    )
)


def list_organizations(after: str | None, limit: int) -> Select[tuple[str, str, int]]:
    q = select(organizations.c.id, organizations.c.name, organizations.c.created_at)
    if after:
        q = q.where(organizations.c.id > after)
    return q.order_by(organizations.c.id).limit(limit)


# --- gateways ---------------------------------------------------------------------------
insert_gateway = insert(gateways)
gateway_by_token_hash = select(gateways.c.id, gateways.c.org_id).where(
    or_(
        gateways.c.ingest_token_hash == bindparam("token_hash"),
        and_(
            gateways.c.previous_token_hash == bindparam("token_hash"),
            gateways.c.previous_token_expires_at > bindparam("now"),
        ),
    ),
    gateways.c.deleted_at.is_(None),
)
rotate_gateway_token = (
    update(gateways)
    .where(
        gateways.c.org_id == bindparam("b_org_id"),
        gateways.c.id == bindparam("b_id"),
        gateways.c.deleted_at.is_(None),
    )
    .values(
        previous_token_hash=gateways.c.ingest_token_hash,
        previous_token_expires_at=bindparam("b_until"),
        ingest_token_hash=bindparam("b_new_hash"),
    )
)
_gateway_cols = (gateways.c.id, gateways.c.name, gateways.c.external_id, gateways.c.created_at)
get_gateway = select(*_gateway_cols).where(
    gateways.c.org_id == bindparam("org_id"),
    gateways.c.id == bindparam("id"),
    gateways.c.deleted_at.is_(None),
)


def list_gateways(org_id: str, after: str | None, limit: int) -> Select[tuple[str, str, str, int]]:
    q = select(*_gateway_cols).where(gateways.c.org_id == org_id, gateways.c.deleted_at.is_(None))
    if after:
        q = q.where(gateways.c.id > after)
    return q.order_by(gateways.c.id).limit(limit)


update_gateway = update(gateways).where(
    gateways.c.org_id == bindparam("b_org_id"),
    gateways.c.id == bindparam("b_id"),
    gateways.c.deleted_at.is_(None),
)
delete_gateway = (
    update(gateways)
    .where(
        gateways.c.org_id == bindparam("b_org_id"),
        gateways.c.id == bindparam("b_id"),
        gateways.c.deleted_at.is_(None),
    )
    .values(deleted_at=bindparam("b_now"))
)
unlink_gateway_from_triggers = delete(trigger_gateways).where(
    trigger_gateways.c.gateway_id == bindparam("id")
)
# The MQTT bridge: which of the gateway ids in topics are known, and to which organization.
known_gateways = select(gateways.c.id, gateways.c.org_id).where(
    gateways.c.id.in_(bindparam("ids", expanding=True)),
    gateways.c.deleted_at.is_(None),
)
# The MQTT bridge: which publishes (by digest) were stored since the cutoff.
seen_digests = select(messages.c.source_digest).where(
    messages.c.gateway_id.in_(bindparam("gateway_ids", expanding=True)),
    messages.c.source_digest.in_(bindparam("digests", expanding=True)),
    messages.c.accepted_at >= bindparam("cutoff"),
)
existing_gateway_ids = select(gateways.c.id).where(
    gateways.c.org_id == bindparam("org_id"),
    gateways.c.id.in_(bindparam("ids", expanding=True)),
    gateways.c.deleted_at.is_(None),
)


# --- connectors -------------------------------------------------------------------------
insert_connector = insert(connectors)
_connector_cols = (
    connectors.c.id,
    connectors.c.org_id,
    connectors.c.name,
    connectors.c.base_url,
    connectors.c.route_values,
    connectors.c.route_events,
    connectors.c.route_alarms,
    connectors.c.auth_type,
    connectors.c.auth_public,
    connectors.c.active,
    connectors.c.deactivated_reason,
    connectors.c.header_names,
    connectors.c.retry_schedule,
    connectors.c.max_attempts,
    connectors.c.connect_timeout,
    connectors.c.request_timeout,
    connectors.c.previous_secret_expires_at,
    connectors.c.max_concurrency,
    connectors.c.rate_limit,
    connectors.c.ordering,
    connectors.c.batch_max_messages,
    connectors.c.batch_max_wait_ms,
    connectors.c.created_at,
    connectors.c.updated_at,
    connectors.c.type,
    connectors.c.target_public,
    connectors.c.transform_language,
    connectors.c.transform_expression,
)
get_connector = select(*_connector_cols).where(
    connectors.c.org_id == bindparam("org_id"),
    connectors.c.id == bindparam("id"),
    connectors.c.deleted_at.is_(None),
    connectors.c.system.is_(None),
)
get_alerts_connector = select(*_connector_cols).where(
    connectors.c.org_id == bindparam("org_id"),
    connectors.c.system == "alerts",
    connectors.c.deleted_at.is_(None),
)
# For connectors that just failed a delivery or were switched off: their organization's
# alerts connector, if it has one (alerts about the alerts connector itself are not sent).
_alerts = connectors.alias("alerts")
alert_targets = (
    select(connectors.c.id, connectors.c.org_id, _alerts.c.id.label("alerts_connector_id"))
    .select_from(
        connectors.join(
            _alerts,
            and_(
                _alerts.c.org_id == connectors.c.org_id,
                _alerts.c.system == "alerts",
                _alerts.c.deleted_at.is_(None),
            ),
        )
    )
    .where(
        connectors.c.id.in_(bindparam("ids", expanding=True)),
        connectors.c.system.is_(None),
    )
)


def list_connectors(org_id: str, after: str | None, limit: int) -> Select[tuple[object, ...]]:
    q = select(*_connector_cols).where(
        connectors.c.org_id == org_id,
        connectors.c.deleted_at.is_(None),
        connectors.c.system.is_(None),
    )
    if after:
        q = q.where(connectors.c.id > after)
    return q.order_by(connectors.c.id).limit(limit)


def update_connector(values: dict[str, object]) -> Update:
    return (
        update(connectors)
        .where(
            connectors.c.org_id == bindparam("b_org_id"),
            connectors.c.id == bindparam("b_id"),
            connectors.c.deleted_at.is_(None),
        )
        .values(**values)
    )


def update_alerts_connector(values: dict[str, object]) -> Update:
    return (
        update(connectors)
        .where(connectors.c.id == bindparam("b_id"), connectors.c.system == "alerts")
        .values(**values)
    )


delete_connector = (
    update(connectors)
    .where(
        connectors.c.org_id == bindparam("b_org_id"),
        connectors.c.id == bindparam("b_id"),
        connectors.c.deleted_at.is_(None),
    )
    .values(deleted_at=bindparam("b_now"), active=False)
)
connector_secret = select(connectors.c.secret_enc).where(
    connectors.c.org_id == bindparam("org_id"),
    connectors.c.id == bindparam("id"),
    connectors.c.deleted_at.is_(None),
)
# A connector's stored credentials and static headers (encrypted), for an edit that keeps
# the ones it was not given.
connector_credentials = select(
    connectors.c.auth_type, connectors.c.auth_secret_enc, connectors.c.headers_enc,
    connectors.c.type, connectors.c.target_secret_enc,
).where(
    connectors.c.org_id == bindparam("org_id"),
    connectors.c.id == bindparam("id"),
    connectors.c.deleted_at.is_(None),
    connectors.c.system.is_(None),
)
# What a worker needs to send: the connector whatever its organization, secrets included.
connector_for_sending = select(
    connectors.c.id,
    connectors.c.base_url,
    connectors.c.route_values,
    connectors.c.route_events,
    connectors.c.route_alarms,
    connectors.c.secret_enc,
    connectors.c.previous_secret_enc,
    connectors.c.previous_secret_expires_at,
    connectors.c.auth_type,
    connectors.c.auth_secret_enc,
    connectors.c.headers_enc,
    connectors.c.retry_schedule,
    connectors.c.max_attempts,
    connectors.c.connect_timeout,
    connectors.c.request_timeout,
    connectors.c.active,
    connectors.c.deleted_at,
    connectors.c.type,
    connectors.c.target_public,
    connectors.c.target_secret_enc,
    connectors.c.transform_expression,
).where(connectors.c.id.in_(bindparam("ids", expanding=True)))


# --- triggers ---------------------------------------------------------------------------
insert_trigger = insert(triggers)
insert_trigger_gateways = insert(trigger_gateways)
list_triggers = (
    select(triggers.c.id, triggers.c.kinds, triggers.c.all_gateways, triggers.c.created_at)
    .where(triggers.c.connector_id == bindparam("connector_id"))
    .order_by(triggers.c.id)
)
trigger_gateway_ids = select(trigger_gateways.c.trigger_id, trigger_gateways.c.gateway_id).where(
    trigger_gateways.c.trigger_id.in_(bindparam("trigger_ids", expanding=True))
)
delete_trigger = delete(triggers).where(
    triggers.c.connector_id == bindparam("connector_id"), triggers.c.id == bindparam("trigger_id")
)
# The routing table of one organization: every trigger of its active connectors, one row
# per scoped gateway (or one row with no gateway for an all-gateways trigger).
routing_rows = (
    select(
        triggers.c.connector_id,
        triggers.c.kinds,
        triggers.c.all_gateways,
        trigger_gateways.c.gateway_id,
    )
    .select_from(
        triggers.join(connectors, connectors.c.id == triggers.c.connector_id).outerjoin(
            trigger_gateways, trigger_gateways.c.trigger_id == triggers.c.id
        )
    )
    .where(
        connectors.c.org_id == bindparam("org_id"),
        connectors.c.active.is_(True),
        connectors.c.deleted_at.is_(None),
    )
    .order_by(triggers.c.connector_id)
)


# --- console users and sessions -------------------------------------------------------------
insert_user = insert(users)
_user_cols = (users.c.id, users.c.org_id, users.c.email, users.c.password_hash, users.c.disabled_at)
user_by_email = select(*_user_cols).where(users.c.email == bindparam("email"))
get_user = select(*_user_cols).where(users.c.id == bindparam("id"))
insert_console_session = insert(console_sessions)
console_session_by_hash = (
    select(
        console_sessions.c.user_id,
        console_sessions.c.csrf_token,
        console_sessions.c.expires_at,
        users.c.org_id,
        users.c.email,
    )
    .select_from(console_sessions.join(users, users.c.id == console_sessions.c.user_id))
    .where(
        console_sessions.c.token_hash == bindparam("token_hash"),
        console_sessions.c.expires_at > bindparam("now"),
        users.c.disabled_at.is_(None),
    )
)
delete_console_session = delete(console_sessions).where(
    console_sessions.c.token_hash == bindparam("token_hash")
)
delete_expired_console_sessions = delete(console_sessions).where(
    console_sessions.c.expires_at <= bindparam("now")
)


# --- the audit log ---------------------------------------------------------------------------
insert_audit_event = insert(audit_events)


def list_audit_events(
    org_id: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    since: int | None = None,
    until: int | None = None,
    after: str | None = None,
    before: str | None = None,
    newest_first: bool = False,
    limit: int,
) -> Select[tuple[object, ...]]:
    """An organization's audit events matching the filters, oldest first (the API; ``after``
    an id continues) or newest first (the console; ``before`` an id continues)."""
    q = select(
        audit_events.c.id,
        audit_events.c.actor,
        audit_events.c.action,
        audit_events.c.target_type,
        audit_events.c.target_id,
        audit_events.c.details,
        audit_events.c.created_at,
    ).where(audit_events.c.org_id == org_id)
    for column, value in ((audit_events.c.target_type, target_type),
                          (audit_events.c.target_id, target_id),
                          (audit_events.c.action, action), (audit_events.c.actor, actor)):
        if value is not None:
            q = q.where(column == value)
    if since is not None:
        q = q.where(audit_events.c.created_at >= since)
    if until is not None:
        q = q.where(audit_events.c.created_at < until)
    if after:
        q = q.where(audit_events.c.id > after)
    if before:
        q = q.where(audit_events.c.id < before)
    order = audit_events.c.id.desc() if newest_first else audit_events.c.id
    return q.order_by(order).limit(limit)


# --- limits per organization -----------------------------------------------------------------
count_connectors = select(func.count()).where(
    connectors.c.org_id == bindparam("org_id"),
    connectors.c.deleted_at.is_(None),
    connectors.c.system.is_(None),
)
count_triggers = select(func.count()).where(triggers.c.org_id == bindparam("org_id"))


# --- secrets at rest: re-encryption under the first key of HOOKSTREAM_SECRETS_KEY -------------

# Every column that holds Fernet ciphertext, by table (each table keyed by "id"). A new
# encrypted column goes here too, or `hookstream secrets rotate-key` would leave it under the
# old key (tests/test_secrets_at_rest.py fails on an "_enc" column missing from this list).
ENCRYPTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "connectors": ("secret_enc", "previous_secret_enc", "auth_secret_enc", "headers_enc",
                   "target_secret_enc"),
}


def encrypted_values(table: str, after: str, limit: int) -> Select[tuple[object, ...]]:
    """A batch of rows' encrypted columns, in id order, locked until the re-encryption commits."""
    t = metadata.tables[table]
    cols = [t.c[name] for name in ENCRYPTED_COLUMNS[table]]
    # FOR UPDATE (PostgreSQL; SQLite's write transaction is exclusive already): a change made
    # meanwhile by the service is not overwritten with the value read before it.
    return (
        select(t.c.id, *cols)
        .where(t.c.id > after)
        .order_by(t.c.id)
        .limit(limit)
        .with_for_update()
    )


def update_encrypted_values(table: str, columns: tuple[str, ...]) -> Update:
    """One row's encrypted ``columns`` set to ``b_<column>``."""
    t = metadata.tables[table]
    return (
        update(t)
        .where(t.c.id == bindparam("b_id"))
        .values({t.c[name]: bindparam(f"b_{name}") for name in columns})
    )


# --- the console: a connector's health --------------------------------------------------------
# Attempts carry no connector: they are counted through their delivery. "first_id" (the
# smallest attempt id of the window's first millisecond; ids are made when the attempt is
# recorded, after it started) lets the primary key bound the scan to the window.
_attempt_succeeded = and_(attempts.c.status_code >= 200, attempts.c.status_code < 300)
connector_attempt_counts = (
    select(
        deliveries.c.connector_id,
        func.count().label("attempts"),
        func.sum(case((_attempt_succeeded, 1), else_=0)).label("succeeded"),
    )
    .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id))
    .where(
        attempts.c.id >= bindparam("first_id"),
        attempts.c.started_at >= bindparam("since"),
        deliveries.c.org_id == bindparam("org_id"),
    )
    .group_by(deliveries.c.connector_id)
)
# The connector's latest failed attempt in the window: no answer, or not a 2xx.
connector_last_failure = (
    select(
        attempts.c.delivery_id,
        attempts.c.started_at,
        attempts.c.status_code,
        attempts.c.error,
        attempts.c.response_body,
    )
    .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id))
    .where(
        attempts.c.id >= bindparam("first_id"),
        deliveries.c.org_id == bindparam("org_id"),
        deliveries.c.connector_id == bindparam("connector_id"),
        or_(attempts.c.status_code.is_(None), ~_attempt_succeeded),
    )
    .order_by(attempts.c.id.desc())
    .limit(1)
)


# --- the console: a connector's charts ---------------------------------------------------------
# Its attempt counts (record.rollup) of [since, until) summed by chart bucket ((period - since)
# // bucket_ms), outcome and rounded duration; only through a connector of the organization.
# The outer statement groups the subquery's columns: PostgreSQL would not see two copies of an
# expression with parameters in it as the same expression.
_window = (
    select(
        ((attempt_counts.c.period - bindparam("since", type_=BigInteger))
         // bindparam("bucket_ms", type_=BigInteger)).label("bucket"),
        attempt_counts.c.outcome,
        attempt_counts.c.duration_ms,
        attempt_counts.c.attempts,
    )
    .select_from(attempt_counts.join(connectors, connectors.c.id == attempt_counts.c.connector_id))
    .where(
        connectors.c.org_id == bindparam("org_id"),
        attempt_counts.c.connector_id == bindparam("connector_id"),
        attempt_counts.c.period >= bindparam("since", type_=BigInteger),
        attempt_counts.c.period < bindparam("until", type_=BigInteger),
    )
    .subquery("attempt_window")
)
connector_attempt_histogram = select(
    _window.c.bucket, _window.c.outcome, _window.c.duration_ms,
    func.sum(_window.c.attempts).label("attempts"),
).group_by(_window.c.bucket, _window.c.outcome, _window.c.duration_ms)
