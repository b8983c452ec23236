"""Pipeline statements: messages, deliveries, replay and cancel, connector health, idempotency."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from hookstream.storage.tables import (
    QUEUE_HELD,
    attempt_counts,
    attempts,
    connectors,
    deliveries,
    gateways,
    idempotency_keys,
    messages,
    organizations,
    queue,
)

# A literal: the same statement text for every call, no extra parameter.
_HELD: Any = literal_column(str(QUEUE_HELD))
# The queue's rows of one connector (the toggle holds, resumes and cancels them).
_queued_of_connector = select(queue.c.delivery_id).where(
    queue.c.connector_id == bindparam("b_connector_id")
)

# --- connector health: sustained failure and 410 switch a connector off ----------------
connector_succeeded = (
    update(connectors)
    .where(connectors.c.id == bindparam("b_id"), connectors.c.failing_since.is_not(None))
    .values(failing_since=None)
)
connector_failed = (
    update(connectors)
    .where(connectors.c.id == bindparam("b_id"), connectors.c.failing_since.is_(None))
    .values(failing_since=bindparam("b_since"))
)
# A plant subscription is never switched off for failing: the app cannot switch it on again,
# and its changes wait, in order, until the endpoint is back (the original bans and drops).
failing_since_before = select(connectors.c.id, connectors.c.failing_since).where(
    connectors.c.id.in_(bindparam("ids", expanding=True)),
    connectors.c.active.is_(True),
    connectors.c.failing_since <= bindparam("cutoff"),
    or_(connectors.c.system.is_(None), connectors.c.system != "subscription"),
)
deactivate_connector = (
    update(connectors)
    .where(connectors.c.id == bindparam("b_id"), connectors.c.active.is_(True))
    .values(active=False, deactivated_reason=bindparam("b_reason"), updated_at=bindparam("b_now"))
)


# --- deliveries held and resumed by the toggle ------------------------------------------
# Each is a pair: the deliveries' status (what the logs show), then their queue rows.
hold_deliveries = (
    update(deliveries)
    .where(deliveries.c.id.in_(_queued_of_connector), deliveries.c.status == "pending")
    .values(status="held", updated_at=bindparam("b_now"))
)
hold_queued = (
    update(queue).where(queue.c.connector_id == bindparam("b_connector_id")).values(due_at=_HELD)
)
resume_deliveries = (
    update(deliveries)
    .where(deliveries.c.id.in_(_queued_of_connector), deliveries.c.status == "held")
    .values(status="pending", next_attempt_at=bindparam("b_now"), updated_at=bindparam("b_now"))
)
resume_queued = (
    update(queue)
    .where(queue.c.connector_id == bindparam("b_connector_id"), queue.c.due_at >= _HELD)
    .values(due_at=bindparam("b_now"))
)
cancel_open_deliveries = (
    update(deliveries)
    .where(
        deliveries.c.id.in_(_queued_of_connector),
        deliveries.c.status.in_(("pending", "held")),
    )
    .values(status="cancelled", updated_at=bindparam("b_now"))
)
# Their leases go with them: an attempt in flight records nothing.
cancel_queued = delete(queue).where(queue.c.connector_id == bindparam("b_connector_id"))


# --- messages ---------------------------------------------------------------------------
insert_messages: Insert = insert(messages)


def _add_attempt_counts(make: Any) -> Any:
    stmt = make(attempt_counts)
    return stmt.on_conflict_do_update(
        index_elements=[attempt_counts.c.connector_id, attempt_counts.c.period,
                        attempt_counts.c.outcome, attempt_counts.c.duration_ms],
        set_={"attempts": attempt_counts.c.attempts + stmt.excluded.attempts},
    )


# Adds a batch's attempts to a connector's counts (record.rollup); an upsert, spelled per dialect.
add_attempt_counts: dict[str, Any] = {
    "sqlite": _add_attempt_counts(sqlite_insert),
    "postgresql": _add_attempt_counts(postgresql_insert),
}
insert_deliveries: Insert = insert(deliveries)
insert_queued: Insert = insert(queue)


_message_cols = (
    messages.c.id,
    messages.c.gateway_id,
    messages.c.kind,
    messages.c.device_id,
    messages.c.body,
    messages.c.accepted_at,
)
get_message = select(*_message_cols).where(
    messages.c.org_id == bindparam("org_id"), messages.c.id == bindparam("id")
)


def list_messages(
    org_id: str,
    *,
    gateway_id: str | None,
    device_id: str | None,
    kind: str | None,
    since_ms: int | None,
    until_ms: int | None,
    before: str | None,
    limit: int,
) -> Select[tuple[object, ...]]:
    # Alerts travel as messages of kind "alert"; the log shows what gateways sent.
    q = select(*_message_cols).where(messages.c.org_id == org_id, messages.c.kind != "alert")
    if gateway_id:
        q = q.where(messages.c.gateway_id == gateway_id)
    if device_id:
        q = q.where(messages.c.device_id == device_id)
    if kind:
        q = q.where(messages.c.kind == kind)
    if since_ms is not None:
        q = q.where(messages.c.accepted_at >= since_ms)
    if until_ms is not None:
        q = q.where(messages.c.accepted_at < until_ms)
    if before:
        q = q.where(messages.c.id < before)
    return q.order_by(messages.c.id.desc()).limit(limit)


# With the gateway's ids: a broker connector's topic may name them.
message_bodies = (
    select(messages.c.id, messages.c.body, messages.c.traceparent, messages.c.gateway_id,
           gateways.c.external_id)
    .select_from(messages.outerjoin(gateways, gateways.c.id == messages.c.gateway_id))
    .where(messages.c.id.in_(bindparam("ids", expanding=True)))
)


# --- deliveries -------------------------------------------------------------------------
_delivery_cols = (
    deliveries.c.id,
    deliveries.c.message_id,
    deliveries.c.connector_id,
    deliveries.c.kind,
    deliveries.c.device_id,
    deliveries.c.status,
    deliveries.c.attempts,
    deliveries.c.next_attempt_at,
    deliveries.c.last_status_code,
    deliveries.c.last_error,
    deliveries.c.replay_of,
    deliveries.c.batch_id,
    deliveries.c.created_at,
    deliveries.c.updated_at,
)
deliveries_of_messages = (
    select(*_delivery_cols)
    .where(deliveries.c.message_id.in_(bindparam("message_ids", expanding=True)))
    .order_by(deliveries.c.id)
)
get_delivery = select(*_delivery_cols).where(
    deliveries.c.org_id == bindparam("org_id"), deliveries.c.id == bindparam("id")
)


def list_deliveries(
    org_id: str,
    *,
    connector_id: str | None,
    status: str | None,
    device_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
    before: str | None,
    limit: int,
) -> Select[tuple[object, ...]]:
    q = select(*_delivery_cols).where(deliveries.c.org_id == org_id)
    if connector_id:
        q = q.where(deliveries.c.connector_id == connector_id)
    if status:
        q = q.where(deliveries.c.status == status)
    if device_id:
        q = q.where(deliveries.c.device_id == device_id)
    if since_ms is not None:
        q = q.where(deliveries.c.created_at >= since_ms)
    if until_ms is not None:
        q = q.where(deliveries.c.created_at < until_ms)
    if before:
        q = q.where(deliveries.c.id < before)
    return q.order_by(deliveries.c.id.desc()).limit(limit)


list_attempts = (
    select(
        attempts.c.id,
        attempts.c.number,
        attempts.c.started_at,
        attempts.c.duration_ms,
        attempts.c.status_code,
        attempts.c.response_body,
        attempts.c.error,
    )
    .where(attempts.c.delivery_id == bindparam("delivery_id"))
    .order_by(attempts.c.number, attempts.c.id)
)

# Claiming, fair and limited per connector. Claims run one at a time (an advisory lock on
# PostgreSQL, the write lock on SQLite), so the limits hold across every worker process.
# A claim reads and leases rows of the narrow queue only; the deliveries' records are written
# when an attempt ends.
_in_flight_rows = queue.alias("in_flight_rows")
_due_rows = queue.alias("due_rows")
due_connectors = select(
    connectors.c.id,
    connectors.c.ordering,
    connectors.c.batch_max_messages,
    connectors.c.batch_max_wait_ms,
    connectors.c.max_concurrency,
    connectors.c.rate_limit,
    connectors.c.rate_tokens,
    connectors.c.rate_updated_at,
    # Requests, not deliveries: a batch in flight is one request.
    select(func.count(func.distinct(func.coalesce(_in_flight_rows.c.batch_id,
                                                  _in_flight_rows.c.delivery_id))))
    .where(
        _in_flight_rows.c.connector_id == connectors.c.id,
        _in_flight_rows.c.lease_id.is_not(None),
        _in_flight_rows.c.due_at > bindparam("now"),
    )
    .scalar_subquery()
    .label("in_flight"),
).where(
    connectors.c.active.is_(True),
    exists().where(
        _due_rows.c.connector_id == connectors.c.id,
        _due_rows.c.due_at <= bindparam("now"),
    ),
)


_earlier = queue.alias("earlier")


@functools.lru_cache(maxsize=256)
def due_ids(per_device: tuple[bool, ...]) -> Select[tuple[str]]:
    """The ids of each connector's first due deliveries, up to its share.

    One part per connector (``per_device[i]`` says how the i-th is ordered), each taking its
    first ``n{i}`` due queue rows of connector ``c{i}`` through the index; parameters ``c{i}``,
    ``n{i}`` and ``now``. Built once per shape and cached: building and compiling it on every
    claim cost more than running it. For a connector ordered per device, only a device's
    oldest open delivery qualifies: the next one waits until it is delivered or has failed
    for good (an open delivery is one still in the queue).
    """
    parts = []
    for i, ordered in enumerate(per_device):
        first = select(queue.c.delivery_id).where(
            queue.c.connector_id == bindparam(f"c{i}"),
            queue.c.due_at <= bindparam("now"),
        )
        if ordered:
            first = first.where(
                ~exists().where(
                    _earlier.c.connector_id == queue.c.connector_id,
                    _earlier.c.device_id == queue.c.device_id,
                    _earlier.c.message_id < queue.c.message_id,
                )
            )
        sub = (
            first.order_by(queue.c.due_at)
            .limit(bindparam(f"n{i}", type_=Integer))
            .subquery()
        )
        parts.append(select(sub.c.delivery_id))
    return union_all(*parts) if len(parts) > 1 else parts[0]  # type: ignore[return-value]


claim_ids = (
    update(queue)
    .where(
        queue.c.delivery_id.in_(
            select(queue.c.delivery_id)
            .where(
                queue.c.delivery_id.in_(bindparam("ids", expanding=True)),
                queue.c.due_at <= bindparam("now"),
            )
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(due_at=bindparam("lease_until"), lease_id=bindparam("lease_id"))
    .returning(
        queue.c.delivery_id.label("id"),
        queue.c.message_id,
        queue.c.connector_id,
        queue.c.kind,
        queue.c.attempts,
        queue.c.batch_id,
    )
)
spend_rate_tokens = (
    update(connectors)
    .where(connectors.c.id == bindparam("b_id"))
    .values(rate_tokens=bindparam("b_tokens"), rate_updated_at=bindparam("b_now"))
)
# Batching: batches already formed (their retries), deliveries not yet in a batch, and
# forming one.
_due_pending = and_(
    queue.c.connector_id == bindparam("connector_id"),
    queue.c.due_at <= bindparam("now"),
)
due_batches = (
    select(queue.c.batch_id)
    .where(_due_pending, queue.c.batch_id.is_not(None))
    .group_by(queue.c.batch_id)
    .order_by(func.min(queue.c.due_at))
    .limit(bindparam("limit"))
)
unbatched_due = (
    select(queue.c.delivery_id.label("id"), queue.c.kind, queue.c.created_at)
    .where(_due_pending, queue.c.batch_id.is_(None), queue.c.kind == bindparam("kind"))
    .order_by(queue.c.message_id)
    .limit(bindparam("limit"))
)
assign_batch = (
    update(queue)
    .where(queue.c.delivery_id.in_(bindparam("ids", expanding=True)))
    .values(batch_id=bindparam("b_batch_id"))
)
# The deliveries' records show the batch (its webhook-id) from the moment it is formed.
assign_batch_deliveries = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .values(batch_id=bindparam("b_batch_id"))
)
# A batch not full yet waits until its oldest message has waited maxWaitMs.
defer_deliveries = (
    update(queue)
    .where(queue.c.delivery_id.in_(bindparam("ids", expanding=True)))
    .values(due_at=bindparam("b_until"))
)
batch_members = select(queue.c.delivery_id.label("id")).where(
    queue.c.batch_id.in_(bindparam("batch_ids", expanding=True)),
    queue.c.due_at <= bindparam("now"),
)
# /metrics: pending deliveries per connector and the oldest unclaimed one's due time.
queue_depth = (
    select(
        queue.c.connector_id,
        func.count().label("depth"),
        func.min(case((queue.c.lease_id.is_(None), queue.c.due_at))).label("oldest_due"),
    )
    .where(queue.c.due_at < _HELD)
    .group_by(queue.c.connector_id)
)
next_due_at = select(func.min(queue.c.due_at)).where(queue.c.due_at < _HELD)

# An outcome is written only by the worker still holding the lease: first the delivery's
# record (while the queue row shows the lease), then its queue row.
_holds_lease = exists().where(
    queue.c.delivery_id == bindparam("b_id"), queue.c.lease_id == bindparam("b_lease_id")
)
record_delivered = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), _holds_lease)
    .values(
        status="delivered",
        attempts=bindparam("b_attempts"),
        last_status_code=bindparam("b_status_code"),
        last_error=None,
        updated_at=bindparam("b_now"),
    )
)
# A delivery held or cancelled while its attempt was in flight keeps that status.
record_not_delivered = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), _holds_lease)
    .values(
        status=case(
            # Literal values: an expanding IN cannot run in executemany.
            (
                or_(
                    deliveries.c.status == literal_column("'held'"),
                    deliveries.c.status == literal_column("'cancelled'"),
                ),
                deliveries.c.status,
            ),
            else_=bindparam("b_status", type_=String),
        ),
        attempts=bindparam("b_attempts"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        last_status_code=bindparam("b_status_code"),
        last_error=bindparam("b_error"),
        updated_at=bindparam("b_now"),
    )
)
_leased_row = and_(
    queue.c.delivery_id == bindparam("b_id"), queue.c.lease_id == bindparam("b_lease_id")
)
# Delivered, or failed for good: the delivery leaves the queue. A held one stays (it is
# tried again when its connector is switched on, as its record's status says).
finish_queued = delete(queue).where(_leased_row, queue.c.due_at < _HELD)
finish_delivered = delete(queue).where(_leased_row)
# Due again at its next attempt (or still held), the lease given back.
requeue = (
    update(queue)
    .where(_leased_row)
    .values(
        due_at=case((queue.c.due_at >= _HELD, queue.c.due_at),
                    else_=bindparam("b_next_attempt_at", type_=BigInteger)),
        attempts=bindparam("b_attempts"),
        lease_id=None,
    )
)
insert_attempts = insert(attempts)
# Give a delivery back without an attempt (its connector was switched off meanwhile).
release_delivery = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), _holds_lease)
    .values(
        status=case((deliveries.c.status == "pending", literal("held")), else_=deliveries.c.status),
        next_attempt_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
)
release_queued = update(queue).where(_leased_row).values(due_at=_HELD, lease_id=None)


# --- replay and cancel ------------------------------------------------------------------
get_organization = select(organizations.c.id, organizations.c.name).where(
    organizations.c.id == bindparam("id")
)
# The deliveries a connector replay covers: the connector's, with the given statuses, created
# in [since, until), whose message is still stored. Paged by id (keyset, "after").
_replayable = and_(
    deliveries.c.org_id == bindparam("org_id"),
    deliveries.c.connector_id == bindparam("connector_id"),
    deliveries.c.status.in_(bindparam("statuses", expanding=True)),
    deliveries.c.created_at >= bindparam("since"),
    deliveries.c.created_at < bindparam("until"),
)
_replayable_from = deliveries.join(messages, messages.c.id == deliveries.c.message_id)
# How many there are, counting no further than "limit" (a cap needs only to know it is passed).
count_replayable = select(func.count()).select_from(
    select(deliveries.c.id)
    .select_from(_replayable_from)
    .where(_replayable)
    .limit(bindparam("limit"))
    .subquery()
)
replayable_batch = (
    select(
        deliveries.c.id,
        deliveries.c.message_id,
        deliveries.c.kind,
        deliveries.c.device_id,
    )
    .select_from(_replayable_from)
    .where(_replayable, deliveries.c.id > bindparam("after"))
    .order_by(deliveries.c.id)
    .limit(bindparam("limit"))
)
# Cancel one delivery that is still queued (pending or held); then its queue row goes (with
# its lease, if any: an attempt in flight records nothing).
cancel_delivery = (
    update(deliveries)
    .where(
        deliveries.c.org_id == bindparam("b_org_id"),
        deliveries.c.id == bindparam("b_id"),
        or_(deliveries.c.status == "pending", deliveries.c.status == "held"),
    )
    .values(status="cancelled", updated_at=bindparam("b_now"))
)
cancel_queued_delivery = delete(queue).where(queue.c.delivery_id == bindparam("b_id"))


# --- idempotency -------------------------------------------------------------------------


# An ingest request already answered, by gateway and Idempotency-Key.
get_idempotency_key = select(
    idempotency_keys.c.request_hash, idempotency_keys.c.response, idempotency_keys.c.created_at
).where(
    idempotency_keys.c.gateway_id == bindparam("gateway_id"),
    idempotency_keys.c.key == bindparam("key"),
)
insert_idempotency_key: Insert = insert(idempotency_keys)
# A key first used before the window's start counts as new: its old row makes way.
delete_expired_idempotency_key = delete(idempotency_keys).where(
    idempotency_keys.c.gateway_id == bindparam("b_gateway_id"),
    idempotency_keys.c.key == bindparam("b_key"),
    idempotency_keys.c.created_at < bindparam("b_cutoff"),
)
