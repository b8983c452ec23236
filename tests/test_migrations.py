"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from hookstream.settings import Settings
from hookstream.storage import migrate
from hookstream.storage.database import async_url
from hookstream.storage.tables import metadata


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
