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
