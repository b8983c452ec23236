"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hookstream.errors import SchemaOutOfDate
from hookstream.settings import Settings
from hookstream.storage import migrate
from hookstream.storage.database import async_url
from hookstream.storage.tables import QUEUE_HELD, metadata


async def test_the_migrated_schema_matches_the_tables_module(settings: Settings) -> None:
    await migrate.upgrade(settings)
    engine = create_async_engine(async_url(settings.database_url))

    def diff(conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


def test_the_revision_checked_at_start_up_is_alembics_head() -> None:
    """A process that does not migrate compares the database with SCHEMA_REVISION."""
    assert migrate.SCHEMA_REVISION == migrate.head_revision()


async def test_a_database_never_migrated_or_behind_is_refused_at_start_up(
    settings: Settings, tmp_path: Any
) -> None:
    empty = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    with pytest.raises(SchemaOutOfDate, match="at nothing, the code needs"):
        await migrate.ensure_current(empty)
    await migrate.upgrade(empty)
    await migrate.ensure_current(empty)  # current: no error
    engine = create_async_engine(async_url(empty.database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0008'"))
    finally:
        await engine.dispose()
    with pytest.raises(SchemaOutOfDate, match="at 0008, the code needs"):
        await migrate.ensure_current(empty)


async def test_upgrading_to_the_queue_keeps_every_open_delivery_as_it_stood(
    settings: Settings,
) -> None:
    """0013 moves open deliveries into the queue: due ones stay due, held ones held, a
    lease in flight stays leased until it ends; finished ones are not queued."""
    await migrate.upgrade(settings)
    engine = create_async_engine(async_url(settings.database_url))
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: _downgrade(sync, "0012"))
    columns = ("id, org_id, message_id, connector_id, kind, device_id, status, attempts, "
               "next_attempt_at, lease_id, batch_id, created_at, updated_at")
    rows = [
        ("dlv_due", "pending", 1, 1000, None),
        ("dlv_held", "held", 2, 2000, None),
        ("dlv_leased", "pending", 0, 9_000, "lse_1"),  # leased until 9,000
        ("dlv_done", "delivered", 1, 500, None),
    ]
    try:
        async with engine.begin() as conn:
            for did, status, attempts, due, lease in rows:
                await conn.execute(text(
                    f"INSERT INTO deliveries ({columns}) VALUES (:id, 'org', :mid, "
                    "'con', 'values', 'dev', :status, :attempts, :due, :lease, NULL, 1, 1)"),
                    {"id": did, "mid": "msg_" + did, "status": status, "attempts": attempts,
                     "due": due, "lease": lease})
        await migrate.upgrade(settings)
        async with engine.connect() as conn:
            queued = {r.delivery_id: (r.due_at, r.lease_id, r.attempts) for r in await conn.execute(
                text("SELECT delivery_id, due_at, lease_id, attempts FROM queue"))}
        assert queued == {
            "dlv_due": (1000, None, 1),
            "dlv_held": (QUEUE_HELD, None, 2),
            "dlv_leased": (9_000, "lse_1", 0),
        }
        # And back: the lease and due time return to the delivery's row.
        await migrate.upgrade(settings)  # a second upgrade is a no-op
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: _downgrade(sync, "0012"))
        async with engine.connect() as conn:
            back = {r.id: (r.status, r.next_attempt_at, r.lease_id) for r in await conn.execute(
                text("SELECT id, status, next_attempt_at, lease_id FROM deliveries"))}
        assert back == {
            "dlv_due": ("pending", 1000, None),
            "dlv_held": ("held", 2000, None),
            "dlv_leased": ("pending", 9_000, "lse_1"),
            "dlv_done": ("delivered", 500, None),
        }
    finally:
        await engine.dispose()


def _downgrade(connection: Any, revision: str) -> None:
    from alembic import command

    command.downgrade(migrate._config(connection), revision)
