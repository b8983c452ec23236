"""The retention purges: old messages, their deliveries and attempts, expired idempotency keys."""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    FromClause,
    and_,
    bindparam,
    delete,
    exists,
    literal_column,
    or_,
    select,
    tuple_,
)

from hookstream.storage.tables import (
    attempt_counts,
    attempts,
    deliveries,
    idempotency_keys,
    messages,
)

# --- retention: old messages, their deliveries and attempts, idempotency keys ---------
# Retention. A message may go once it was accepted before "cutoff" and none of its
# deliveries is open (pending or held); its deliveries and their attempts go with it. Each
# statement deletes at most "limit" rows, bottom up: the attempts of such messages'
# deliveries, then those deliveries once they have no attempt left, then the messages once
# they have no delivery left, so no row is ever left without its parent. "cutoff_id" is the
# smallest message id of the cutoff millisecond (ids sort by time): the scan of old messages
# is a range of the primary key. On PostgreSQL the chosen rows are locked SKIP LOCKED, so
# purgers in several processes share the work instead of waiting on (or deadlocking with)
# each other; SQLite has one writer at a time anyway.
_purge_m = messages.alias("purge_m")
_purge_d = deliveries.alias("purge_d")
_purge_a = attempts.alias("purge_a")
_open_d = deliveries.alias("open_d")
_purge_k = idempotency_keys.alias("purge_k")


def _old(m: FromClause) -> ColumnElement[bool]:
    return and_(m.c.id < bindparam("cutoff_id"), m.c.accepted_at < bindparam("cutoff"))


def _purgeable(m: FromClause) -> ColumnElement[bool]:
    # Literal statuses: no extra parameters, the same in every statement.
    still_open = exists().where(
        _open_d.c.message_id == m.c.id,
        or_(
            _open_d.c.status == literal_column("'pending'"),
            _open_d.c.status == literal_column("'held'"),
        ),
    )
    return and_(_old(m), ~still_open)


# A connector's counts for its charts: whole periods before the cutoff (at most a few thousand
# rows a connector a day, so one statement).
purge_attempt_counts = delete(attempt_counts).where(attempt_counts.c.period < bindparam("before"))

purge_attempts = delete(attempts).where(
    attempts.c.id.in_(
        select(_purge_a.c.id)
        .select_from(
            _purge_a.join(_purge_d, _purge_d.c.id == _purge_a.c.delivery_id).join(
                _purge_m, _purge_m.c.id == _purge_d.c.message_id
            )
        )
        .where(_purgeable(_purge_m))
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=_purge_a)
    )
)
purge_deliveries = delete(deliveries).where(
    deliveries.c.id.in_(
        select(_purge_d.c.id)
        .select_from(_purge_d.join(_purge_m, _purge_m.c.id == _purge_d.c.message_id))
        .where(
            _purgeable(_purge_m),
            ~exists().where(_purge_a.c.delivery_id == _purge_d.c.id),
        )
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=_purge_d)
    )
)
purge_messages = delete(messages).where(
    messages.c.id.in_(
        select(_purge_m.c.id)
        .where(_old(_purge_m), ~exists().where(_purge_d.c.message_id == _purge_m.c.id))
        .order_by(_purge_m.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=_purge_m)
    )
)
purge_idempotency_keys = delete(idempotency_keys).where(
    tuple_(idempotency_keys.c.gateway_id, idempotency_keys.c.key).in_(
        select(_purge_k.c.gateway_id, _purge_k.c.key)
        .where(_purge_k.c.created_at < bindparam("cutoff"))
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
)
