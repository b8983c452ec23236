"""The repository's thermostat methods: plants, modules, plant subscriptions, keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from hookstream.storage import queries as q
from hookstream.storage.repository._base import Rows, _Base


class ThermostatQueries(_Base):
    # --- plants and modules -------------------------------------------------------------
    async def insert_plant(self, **values: Any) -> None:
        await self.conn.execute(q.insert_plant, values)

    async def get_plant(self, org_id: str, plant_id: str) -> Row[Any] | None:
        return await self._one(q.get_plant, {"org_id": org_id, "id": plant_id})

    async def list_plants(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_plants(org_id, after, limit))

    async def update_plant(self, org_id: str, plant_id: str, **values: Any) -> int:
        return await self._count(
            q.update_plant.values(**values), {"b_org_id": org_id, "b_id": plant_id}
        )

    async def delete_plant(self, org_id: str, plant_id: str, now: int) -> int:
        return await self._count(
            q.delete_plant, {"b_org_id": org_id, "b_id": plant_id, "b_now": now}
        )

    async def delete_plant_modules(self, plant_id: str, now: int) -> int:
        return await self._count(q.delete_plant_modules, {"b_plant_id": plant_id, "b_now": now})

    async def insert_module(self, **values: Any) -> None:
        await self.conn.execute(q.insert_module, values)

    async def get_module(self, org_id: str, plant_id: str, module_id: str) -> Row[Any] | None:
        return await self._one(
            q.get_module, {"org_id": org_id, "plant_id": plant_id, "id": module_id}
        )

    async def list_modules(
        self, org_id: str, plant_id: str, after: str | None, limit: int
    ) -> Rows:
        return await self._all(q.list_modules(org_id, plant_id, after, limit))

    async def update_module(
        self, org_id: str, plant_id: str, module_id: str, **values: Any
    ) -> int:
        return await self._count(
            q.update_module.values(**values),
            {"b_org_id": org_id, "b_plant_id": plant_id, "b_id": module_id},
        )

    async def delete_module(self, org_id: str, plant_id: str, module_id: str, now: int) -> int:
        return await self._count(q.delete_module, {
            "b_org_id": org_id, "b_plant_id": plant_id, "b_id": module_id, "b_now": now,
        })

    async def write_module_state(
        self, module_id: str, version: int, state: str, new_version: int, now: int
    ) -> int:
        return await self._count(q.write_module_state, {
            "b_id": module_id, "b_version": version, "b_state": state,
            "b_new_version": new_version, "b_now": now,
        })

    async def reported_modules(self, gateway_id: str, device_ids: list[str]) -> Rows:
        return await self._all(
            q.reported_modules, {"gateway_id": gateway_id, "device_ids": device_ids}
        )

    async def linked_gateway_ids(self, org_id: str) -> list[str]:
        return [str(r[0]) for r in await self._all(q.linked_gateway_ids, {"org_id": org_id})]

    # --- plant subscriptions ------------------------------------------------------------
    async def insert_plant_subscription(self, **values: Any) -> None:
        await self.conn.execute(q.insert_plant_subscription, values)

    async def subscriptions_of_plant(self, org_id: str, plant_id: str) -> Rows:
        return await self._all(q.subscriptions_of_plant, {"org_id": org_id, "plant_id": plant_id})

    async def subscriptions_of_client(self, org_id: str, client_id: str) -> Rows:
        return await self._all(
            q.subscriptions_of_client, {"org_id": org_id, "client_id": client_id}
        )

    async def get_plant_subscription(
        self, org_id: str, plant_id: str, subscription_id: str
    ) -> Row[Any] | None:
        return await self._one(
            q.get_plant_subscription,
            {"org_id": org_id, "plant_id": plant_id, "id": subscription_id},
        )

    async def delete_plant_subscription(self, subscription_id: str, now: int) -> int:
        return await self._count(
            q.delete_plant_subscription, {"b_id": subscription_id, "b_now": now}
        )

    async def subscriptions_to_end(
        self, org_id: str, *, plant_id: str | None = None, client_id: str | None = None
    ) -> Rows:
        return await self._all(
            q.subscriptions_to_end,
            {"org_id": org_id, "plant_id": plant_id, "client_id": client_id},
        )

    # --- subscription keys --------------------------------------------------------------
    async def insert_subscription_key(self, **values: Any) -> None:
        await self.conn.execute(q.insert_subscription_key, values)

    async def subscription_key_by_hash(self, key_hash: str, now: int) -> Row[Any] | None:
        return await self._one(q.subscription_key_by_hash, {"key_hash": key_hash, "now": now})

    async def rotate_subscription_key(
        self, org_id: str, key_id: str, new_hash: str, until: int
    ) -> int:
        return await self._count(q.rotate_subscription_key, {
            "b_org_id": org_id, "b_id": key_id, "b_new_hash": new_hash, "b_until": until,
        })

    async def list_subscription_keys(self, org_id: str, after: str | None, limit: int) -> Rows:
        return await self._all(q.list_subscription_keys(org_id, after, limit))

    async def delete_subscription_key(self, org_id: str, key_id: str, now: int) -> int:
        return await self._count(
            q.delete_subscription_key, {"b_org_id": org_id, "b_id": key_id, "b_now": now}
        )
