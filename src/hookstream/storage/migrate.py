"""Schema migrations (Alembic), run by ``hookstream migrate`` and checked at start-up.

The start-up check reads the revision with one query and compares it with ``SCHEMA_REVISION``:
a process that does not migrate (``hookstream api``, ``worker``, ``mqtt``) never imports
Alembic nor reads the migration scripts. A test keeps the constant equal to Alembic's head.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text

from hookstream.errors import SchemaOutOfDate
from hookstream.settings import Settings
from hookstream.storage.database import database_errors, migration_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions (the code's schema); tests/test_migrations.py
# fails when a migration is added without it.
SCHEMA_REVISION = "0013"
# Any constant works; it keeps two processes from migrating one PostgreSQL at once.
_ADVISORY_LOCK = 0x686F6F6B


def _config(connection: Any = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


async def upgrade(settings: Settings) -> str | None:
    """Bring the schema to the newest revision; returns it."""
    from alembic import command

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
    """The database's revision; None for a database never migrated."""
    engine = migration_engine(settings)
    try:
        async with database_errors(settings.database_url), engine.connect() as conn:
            if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
                return None  # nothing was migrated
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            versions = [r[0] for r in rows]
    finally:
        await engine.dispose()
    return versions[0] if len(versions) == 1 else None


async def ensure_current(settings: Settings) -> None:
    """Raise SchemaOutOfDate unless the database is at the newest revision."""
    current = await current_revision(settings)
    if current != SCHEMA_REVISION:
        raise SchemaOutOfDate(
            f"the database schema is at {current or 'nothing'}, the code needs "
            f"{SCHEMA_REVISION}: run 'hookstream migrate'"
        )
