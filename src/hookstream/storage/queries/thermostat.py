"""The thermostat cloud's statements: plants and modules, plant subscriptions, subscription keys."""

from __future__ import annotations

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)

from hookstream.storage.tables import (
    modules,
    plant_subscriptions,
    plants,
    subscription_keys,
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
