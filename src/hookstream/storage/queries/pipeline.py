"""Every SQL statement hookstream runs, each under a name (SQLAlchemy Core, both dialects).

The repository (``repository.py``) has one method per statement here. Statements built from
filters are functions; fixed ones are constants, compiled once and cached.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    String,
    Update,
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
from sqlalchemy.sql.dml import Insert

from hookstream.storage.tables import (
    attempts,
    audit_events,
    connectors,
    console_sessions,
    deliveries,
    gateways,
    messages,
    meta,
    modules,
    oauth_clients,
    oauth_codes,
    oauth_tokens,
    organizations,
    plant_subscriptions,
    plants,
    subscription_keys,
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
).where(connectors.c.id.in_(bindparam("ids", expanding=True)))

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
hold_deliveries = (
    update(deliveries)
    .where(
        deliveries.c.connector_id == bindparam("b_connector_id"), deliveries.c.status == "pending"
    )
    .values(status="held", updated_at=bindparam("b_now"))
)
resume_deliveries = (
    update(deliveries)
    .where(deliveries.c.connector_id == bindparam("b_connector_id"), deliveries.c.status == "held")
    .values(status="pending", next_attempt_at=bindparam("b_now"), updated_at=bindparam("b_now"))
)
cancel_open_deliveries = (
    update(deliveries)
    .where(
        deliveries.c.connector_id == bindparam("b_connector_id"),
        deliveries.c.status.in_(("pending", "held")),
    )
    .values(status="cancelled", lease_id=None, updated_at=bindparam("b_now"))
)

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

# --- messages ---------------------------------------------------------------------------
insert_messages: Insert = insert(messages)
insert_deliveries: Insert = insert(deliveries)


DriverSql = tuple[str, tuple[str, ...], dict[str, Any]]
_driver_sql: dict[tuple[Any, str, tuple[str, ...]], DriverSql] = {}


def driver_sql(stmt: Any, dialect: Any, keys: tuple[str, ...]) -> DriverSql:
    """``stmt`` compiled once per dialect for the driver's executemany.

    Returns the SQL, the order of its parameters and the values the statement itself sets
    (``.values(status="delivered")``). SQLAlchemy otherwise builds every row's parameters in
    Python; for the worker's batches of outcomes that was a large part of its time. ``keys``
    are the rows' keys (an INSERT without values takes its columns from them).
    """
    cache_key = (stmt, dialect.name, keys)
    found = _driver_sql.get(cache_key)
    if found is None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup or ())
        fixed = {k: v for k, v in compiled.params.items() if k not in keys}
        found = (compiled.string, order, fixed)
        if len(_driver_sql) >= 1024:  # claim shapes vary with the connectors due; stay small
            _driver_sql.clear()
        _driver_sql[cache_key] = found
    return found


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


message_bodies = select(messages.c.id, messages.c.body).where(
    messages.c.id.in_(bindparam("ids", expanding=True))
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
_in_flight_rows = deliveries.alias("in_flight_rows")
_due_rows = deliveries.alias("due_rows")
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
                                                  _in_flight_rows.c.id))))
    .where(
        _in_flight_rows.c.connector_id == connectors.c.id,
        _in_flight_rows.c.lease_id.is_not(None),
        _in_flight_rows.c.status == "pending",
        _in_flight_rows.c.next_attempt_at > bindparam("now"),
    )
    .scalar_subquery()
    .label("in_flight"),
).where(
    connectors.c.active.is_(True),
    exists().where(
        _due_rows.c.connector_id == connectors.c.id,
        _due_rows.c.status == "pending",
        _due_rows.c.next_attempt_at <= bindparam("now"),
    ),
)


_earlier = deliveries.alias("earlier")


@functools.lru_cache(maxsize=256)
def due_ids(per_device: tuple[bool, ...]) -> Select[tuple[str]]:
    """The ids of each connector's first due deliveries, up to its share.

    One part per connector (``per_device[i]`` says how the i-th is ordered), each taking its
    first ``n{i}`` due deliveries of connector ``c{i}`` through the index; parameters ``c{i}``,
    ``n{i}`` and ``now``. Built once per shape and cached: building and compiling it on every
    claim cost more than running it. For a connector ordered per device, only a device's
    oldest open delivery qualifies: the next one waits until it is delivered or has failed
    for good.
    """
    parts = []
    for i, ordered in enumerate(per_device):
        first = select(deliveries.c.id).where(
            deliveries.c.connector_id == bindparam(f"c{i}"),
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= bindparam("now"),
        )
        if ordered:
            first = first.where(
                ~exists().where(
                    _earlier.c.connector_id == deliveries.c.connector_id,
                    _earlier.c.device_id == deliveries.c.device_id,
                    # Not IN (...): an expanding list cannot go to the driver as it is.
                    or_(_earlier.c.status == "pending", _earlier.c.status == "held"),
                    _earlier.c.message_id < deliveries.c.message_id,
                )
            )
        sub = (
            first.order_by(deliveries.c.next_attempt_at)
            .limit(bindparam(f"n{i}", type_=Integer))
            .subquery()
        )
        parts.append(select(sub.c.id))
    return union_all(*parts) if len(parts) > 1 else parts[0]  # type: ignore[return-value]


claim_ids = (
    update(deliveries)
    .where(
        deliveries.c.id.in_(
            select(deliveries.c.id)
            .where(
                deliveries.c.id.in_(bindparam("ids", expanding=True)),
                deliveries.c.status == "pending",
                deliveries.c.next_attempt_at <= bindparam("now"),
            )
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(
        next_attempt_at=bindparam("lease_until"),
        lease_id=bindparam("lease_id"),
        updated_at=bindparam("now"),
    )
    .returning(
        deliveries.c.id,
        deliveries.c.message_id,
        deliveries.c.connector_id,
        deliveries.c.kind,
        deliveries.c.attempts,
        deliveries.c.batch_id,
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
    deliveries.c.connector_id == bindparam("connector_id"),
    deliveries.c.status == "pending",
    deliveries.c.next_attempt_at <= bindparam("now"),
)
due_batches = (
    select(deliveries.c.batch_id)
    .where(_due_pending, deliveries.c.batch_id.is_not(None))
    .group_by(deliveries.c.batch_id)
    .order_by(func.min(deliveries.c.next_attempt_at))
    .limit(bindparam("limit"))
)
unbatched_due = (
    select(deliveries.c.id, deliveries.c.kind, deliveries.c.created_at)
    .where(_due_pending, deliveries.c.batch_id.is_(None), deliveries.c.kind == bindparam("kind"))
    .order_by(deliveries.c.message_id)
    .limit(bindparam("limit"))
)
assign_batch = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .values(batch_id=bindparam("b_batch_id"))
)
# A batch not full yet waits until its oldest message has waited maxWaitMs.
defer_deliveries = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .values(next_attempt_at=bindparam("b_until"))
)
batch_members = select(deliveries.c.id).where(
    deliveries.c.batch_id.in_(bindparam("batch_ids", expanding=True)),
    deliveries.c.status == "pending",
    deliveries.c.next_attempt_at <= bindparam("now"),
)
# /metrics: pending deliveries per connector and the oldest unclaimed one's due time.
queue_depth = (
    select(
        deliveries.c.connector_id,
        func.count().label("depth"),
        func.min(
            case((deliveries.c.lease_id.is_(None), deliveries.c.next_attempt_at))
        ).label("oldest_due"),
    )
    .where(deliveries.c.status == "pending")
    .group_by(deliveries.c.connector_id)
)
next_due_at = select(func.min(deliveries.c.next_attempt_at)).where(deliveries.c.status == "pending")

# An outcome is written only by the worker still holding the lease.
_leased = and_(
    deliveries.c.id == bindparam("b_id"), deliveries.c.lease_id == bindparam("b_lease_id")
)
record_delivered = (
    update(deliveries)
    .where(_leased)
    .values(
        status="delivered",
        attempts=bindparam("b_attempts"),
        last_status_code=bindparam("b_status_code"),
        last_error=None,
        lease_id=None,
        updated_at=bindparam("b_now"),
    )
)
# A delivery held or cancelled while its attempt was in flight keeps that status.
record_not_delivered = (
    update(deliveries)
    .where(_leased)
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
        lease_id=None,
        updated_at=bindparam("b_now"),
    )
)
insert_attempts = insert(attempts)
# Give a delivery back without an attempt (its connector was switched off meanwhile).
release_delivery = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"), deliveries.c.lease_id == bindparam("b_lease_id"))
    .values(
        status=case((deliveries.c.status == "pending", literal("held")), else_=deliveries.c.status),
        next_attempt_at=bindparam("b_now"),
        lease_id=None,
        updated_at=bindparam("b_now"),
    )
)

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
# Cancel one delivery that is still queued (pending or held); its lease, if any, is void.
cancel_delivery = (
    update(deliveries)
    .where(
        deliveries.c.org_id == bindparam("b_org_id"),
        deliveries.c.id == bindparam("b_id"),
        or_(deliveries.c.status == "pending", deliveries.c.status == "held"),
    )
    .values(status="cancelled", lease_id=None, updated_at=bindparam("b_now"))
)

# --- idempotency and retention ----------------------------------------------------------
# (Imported here, not at the top, so that this section stays one block at the end.)
from sqlalchemy import ColumnElement, FromClause, tuple_  # noqa: E402

from hookstream.storage.tables import idempotency_keys  # noqa: E402

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


# --- plants and modules (the thermostat cloud) -------------------------------------------
insert_plant = insert(plants)
_plant_cols = (plants.c.id, plants.c.name, plants.c.created_at, plants.c.updated_at)
get_plant = select(*_plant_cols).where(
    plants.c.org_id == bindparam("org_id"),
    plants.c.id == bindparam("id"),
    plants.c.deleted_at.is_(None),
)


def list_plants(org_id: str, after: str | None, limit: int) -> Select[tuple[object, ...]]:
    q = select(*_plant_cols).where(plants.c.org_id == org_id, plants.c.deleted_at.is_(None))
    if after:
        q = q.where(plants.c.id > after)
    return q.order_by(plants.c.id).limit(limit)


update_plant = update(plants).where(
    plants.c.org_id == bindparam("b_org_id"),
    plants.c.id == bindparam("b_id"),
    plants.c.deleted_at.is_(None),
)
delete_plant = (
    update(plants)
    .where(
        plants.c.org_id == bindparam("b_org_id"),
        plants.c.id == bindparam("b_id"),
        plants.c.deleted_at.is_(None),
    )
    .values(deleted_at=bindparam("b_now"))
)
delete_plant_modules = (
    update(modules)
    .where(modules.c.plant_id == bindparam("b_plant_id"), modules.c.deleted_at.is_(None))
    .values(deleted_at=bindparam("b_now"))
)

insert_module = insert(modules)
_module_cols = (
    modules.c.id,
    modules.c.plant_id,
    modules.c.name,
    modules.c.gateway_id,
    modules.c.device_id,
    modules.c.mapping,
    modules.c.state,
    modules.c.state_version,
    modules.c.created_at,
    modules.c.updated_at,
)
get_module = select(*_module_cols).where(
    modules.c.org_id == bindparam("org_id"),
    modules.c.plant_id == bindparam("plant_id"),
    modules.c.id == bindparam("id"),
    modules.c.deleted_at.is_(None),
)


def list_modules(
    org_id: str, plant_id: str, after: str | None, limit: int
) -> Select[tuple[object, ...]]:
    q = select(*_module_cols).where(
        modules.c.org_id == org_id, modules.c.plant_id == plant_id, modules.c.deleted_at.is_(None)
    )
    if after:
        q = q.where(modules.c.id > after)
    return q.order_by(modules.c.id).limit(limit)


update_module = update(modules).where(
    modules.c.org_id == bindparam("b_org_id"),
    modules.c.plant_id == bindparam("b_plant_id"),
    modules.c.id == bindparam("b_id"),
    modules.c.deleted_at.is_(None),
)
delete_module = (
    update(modules)
    .where(
        modules.c.org_id == bindparam("b_org_id"),
        modules.c.plant_id == bindparam("b_plant_id"),
        modules.c.id == bindparam("b_id"),
        modules.c.deleted_at.is_(None),
    )
    .values(deleted_at=bindparam("b_now"))
)
# A state change lands only on the version it was computed from (else: read again, retry).
write_module_state = (
    update(modules)
    .where(
        modules.c.id == bindparam("b_id"),
        modules.c.state_version == bindparam("b_version"),
        modules.c.deleted_at.is_(None),
    )
    .values(
        state=bindparam("b_state"),
        state_version=bindparam("b_new_version"),
        updated_at=bindparam("b_now"),
    )
)
# Ingest: the modules that the messages of this gateway (by device) report for.
reported_modules = select(
    modules.c.id,
    modules.c.org_id,
    modules.c.plant_id,
    modules.c.device_id,
    modules.c.mapping,
    modules.c.state,
    modules.c.state_version,
).where(
    modules.c.gateway_id == bindparam("gateway_id"),
    modules.c.device_id.in_(bindparam("device_ids", expanding=True)),
    modules.c.deleted_at.is_(None),
)
# Ingest: the organization's gateways that have modules linked (cached briefly).
linked_gateway_ids = (
    select(modules.c.gateway_id)
    .where(
        modules.c.org_id == bindparam("org_id"),
        modules.c.gateway_id.is_not(None),
        modules.c.deleted_at.is_(None),
    )
    .distinct()
)

# --- plant subscriptions --------------------------------------------------------------------
insert_plant_subscription = insert(plant_subscriptions)
_subscription_cols = (
    plant_subscriptions.c.id,
    plant_subscriptions.c.plant_id,
    plant_subscriptions.c.client_id,
    plant_subscriptions.c.connector_id,
    plant_subscriptions.c.endpoint_url,
    plant_subscriptions.c.verified,
    plant_subscriptions.c.created_at,
)
subscriptions_of_plant = (
    select(*_subscription_cols)
    .where(
        plant_subscriptions.c.org_id == bindparam("org_id"),
        plant_subscriptions.c.plant_id == bindparam("plant_id"),
        plant_subscriptions.c.deleted_at.is_(None),
    )
    .order_by(plant_subscriptions.c.id)
)
subscriptions_of_client = (
    select(*_subscription_cols)
    .where(
        plant_subscriptions.c.org_id == bindparam("org_id"),
        plant_subscriptions.c.client_id == bindparam("client_id"),
        plant_subscriptions.c.deleted_at.is_(None),
    )
    .order_by(plant_subscriptions.c.id)
)
get_plant_subscription = select(*_subscription_cols).where(
    plant_subscriptions.c.org_id == bindparam("org_id"),
    plant_subscriptions.c.plant_id == bindparam("plant_id"),
    plant_subscriptions.c.id == bindparam("id"),
    plant_subscriptions.c.deleted_at.is_(None),
)
delete_plant_subscription = (
    update(plant_subscriptions)
    .where(
        plant_subscriptions.c.id == bindparam("b_id"),
        plant_subscriptions.c.deleted_at.is_(None),
    )
    .values(deleted_at=bindparam("b_now"))
)
# Deleting a plant or a client ends its subscriptions: which connectors to retire.
subscriptions_to_end = select(plant_subscriptions.c.id, plant_subscriptions.c.connector_id).where(
    plant_subscriptions.c.org_id == bindparam("org_id"),
    or_(
        plant_subscriptions.c.plant_id == bindparam("plant_id"),
        plant_subscriptions.c.client_id == bindparam("client_id"),
    ),
    plant_subscriptions.c.deleted_at.is_(None),
)

# --- subscription keys ----------------------------------------------------------------------
insert_subscription_key = insert(subscription_keys)
subscription_key_by_hash = select(subscription_keys.c.id, subscription_keys.c.org_id).where(
    or_(
        subscription_keys.c.key_hash == bindparam("key_hash"),
        and_(
            subscription_keys.c.previous_key_hash == bindparam("key_hash"),
            subscription_keys.c.previous_key_expires_at > bindparam("now"),
        ),
    ),
    subscription_keys.c.deleted_at.is_(None),
)
rotate_subscription_key = (
    update(subscription_keys)
    .where(
        subscription_keys.c.org_id == bindparam("b_org_id"),
        subscription_keys.c.id == bindparam("b_id"),
        subscription_keys.c.deleted_at.is_(None),
    )
    .values(
        previous_key_hash=subscription_keys.c.key_hash,
        previous_key_expires_at=bindparam("b_until"),
        key_hash=bindparam("b_new_hash"),
    )
)


def list_subscription_keys(
    org_id: str, after: str | None, limit: int
) -> Select[tuple[object, ...]]:
    q = select(
        subscription_keys.c.id, subscription_keys.c.name, subscription_keys.c.created_at
    ).where(subscription_keys.c.org_id == org_id, subscription_keys.c.deleted_at.is_(None))
    if after:
        q = q.where(subscription_keys.c.id > after)
    return q.order_by(subscription_keys.c.id).limit(limit)


delete_subscription_key = (
    update(subscription_keys)
    .where(
        subscription_keys.c.org_id == bindparam("b_org_id"),
        subscription_keys.c.id == bindparam("b_id"),
        subscription_keys.c.deleted_at.is_(None),
    )
    .values(deleted_at=bindparam("b_now"))
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

# --- the audit log ---------------------------------------------------------------------------
insert_audit_event = insert(audit_events)


def list_audit_events(
    org_id: str,
    *,
    target_id: str | None,
    action: str | None,
    since: int | None,
    until: int | None,
    after: str | None,
    limit: int,
) -> Select[tuple[object, ...]]:
    q = select(
        audit_events.c.id,
        audit_events.c.actor,
        audit_events.c.action,
        audit_events.c.target_type,
        audit_events.c.target_id,
        audit_events.c.details,
        audit_events.c.created_at,
    ).where(audit_events.c.org_id == org_id)
    if target_id is not None:
        q = q.where(audit_events.c.target_id == target_id)
    if action is not None:
        q = q.where(audit_events.c.action == action)
    if since is not None:
        q = q.where(audit_events.c.created_at >= since)
    if until is not None:
        q = q.where(audit_events.c.created_at < until)
    if after:
        q = q.where(audit_events.c.id > after)
    return q.order_by(audit_events.c.id).limit(limit)

# --- limits per organization -----------------------------------------------------------------
count_connectors = select(func.count()).where(
    connectors.c.org_id == bindparam("org_id"),
    connectors.c.deleted_at.is_(None),
    connectors.c.system.is_(None),
)
count_triggers = select(func.count()).where(triggers.c.org_id == bindparam("org_id"))


# --- secrets at rest: re-encryption under the first key of HOOKSTREAM_SECRETS_KEY -------------
from hookstream.storage.tables import metadata  # noqa: E402

# Every column that holds Fernet ciphertext, by table (each table keyed by "id"). A new
# encrypted column goes here too, or `hookstream secrets rotate-key` would leave it under the
# old key (tests/test_secrets_at_rest.py fails on an "_enc" column missing from this list).
ENCRYPTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "connectors": ("secret_enc", "previous_secret_enc", "auth_secret_enc", "headers_enc"),
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
