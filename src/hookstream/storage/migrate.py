"""Schema migrations (Alembic), run by ``hookstream migrate`` and checked at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from hookstream.errors import SchemaOutOfDate
from hookstream.settings import Settings
from hookstream.storage.database import database_errors, migration_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant works; it keeps two processes from migrating one PostgreSQL at once.
_ADVISORY_LOCK = 0x686F6F6B


def _config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


async def upgrade(settings: Settings) -> str | None:
    """Bring the schema to the newest revision; returns it."""
    engine = migration_engine(settings)
    try:
        async with database_errors(settings.database_url), engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
            await conn.run_sync(lambda sync: command.upgrade(_config(sync), "head"))
    finally:
        await engine.dispose()
    return head_revision()


async def current_revision(settings: Settings) -> str | None:
    engine = migration_engine(settings)
    try:
        async with database_errors(settings.database_url), engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def ensure_current(settings: Settings) -> None:
    """Raise SchemaOutOfDate unless the database is at the newest revision."""
    current, head = await current_revision(settings), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the database schema is at {current or 'nothing'}, the code needs {head}: "
            "run 'hookstream migrate'"
        )
