"""SQLite write transactions run on the event loop (``storage.database.InlineSqlite``).

Against a real database file: what a write commits is read back by the reader connections
(aiosqlite's threads), a failed write leaves nothing and the next one works, and a write's
statements run on the loop's own thread (a thread hop per statement was what held SQLite's
write lock for milliseconds)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hookstream.storage.database import Database
from tests.support import base_settings


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(base_settings(f"sqlite:///{tmp_path / 'writes.db'}"))
    async with database.write() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield database
    await database.dispose()


async def count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM t"))).scalar_one())


async def test_what_a_write_commits_is_read_back(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b')"))
    assert await count(db) == 2


async def test_a_failed_write_leaves_nothing_and_the_next_one_works(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
            await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'again')"))
    assert await count(db) == 0
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
    assert await count(db) == 1


async def running_thread(conn: AsyncConnection) -> int:
    """The thread a statement of ``conn`` runs in (a SQL function reports it)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.create_function("thread_ident", 0, threading.get_ident)
    return int((await conn.execute(text("SELECT thread_ident()"))).scalar_one())


async def test_writes_run_on_the_event_loop_and_reads_on_threads(db: Database) -> None:
    loop_thread = threading.get_ident()
    async with db.write() as conn:
        assert await running_thread(conn) == loop_thread
    async with db.read() as conn:
        assert await running_thread(conn) != loop_thread


async def synchronous_mode(conn: AsyncConnection) -> int:
    """SQLite's ``synchronous`` for the transaction of ``conn`` (1 NORMAL, 2 FULL)."""
    return int((await conn.execute(text("PRAGMA synchronous"))).scalar_one())


async def test_a_durable_write_is_flushed_and_a_redoable_one_is_not(db: Database) -> None:
    """Accepting a message flushes its commit to disk; a claim or a batch of outcomes (what
    the pipeline can redo) commits without waiting for the disk, and the next durable write
    flushes again."""
    async with db.write() as conn:
        assert await synchronous_mode(conn) == 2
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'accepted')"))
    async with db.write(durable=False) as conn:
        assert await synchronous_mode(conn) == 1
        await conn.execute(text("UPDATE t SET v = 'claimed' WHERE id = 1"))
    async with db.read() as conn:
        assert (await conn.execute(text("SELECT v FROM t"))).scalar_one() == "claimed"
    async with db.write() as conn:
        assert await synchronous_mode(conn) == 2


async def test_normal_everywhere_when_the_deployment_chose_it(tmp_path: Path) -> None:
    """HOOKSTREAM_SQLITE_SYNCHRONOUS=normal is not raised back to FULL for durable writes."""
    settings = base_settings(f"sqlite:///{tmp_path / 'normal.db'}").model_copy(
        update={"sqlite_synchronous": "normal"})
    database = Database(settings)
    try:
        for durable in (True, False, True):
            async with database.write(durable=durable) as conn:
                assert await synchronous_mode(conn) == 1
    finally:
        await database.dispose()


async def test_a_commit_that_waits_for_the_disk_leaves_the_loop_free(db: Database) -> None:
    """A durable commit (its fsync) runs in a thread, so the loop serves others meanwhile
    (ingest's group commit gathers the requests that arrive during it); a redoable one, which
    does not wait for the disk, stays on the loop's thread."""
    commits: list[int] = []

    def trace(statement: str) -> None:
        if statement.strip().upper().startswith("COMMIT"):
            commits.append(threading.get_ident())

    async with db.write() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        driver._conn.set_trace_callback(trace)  # the one writer connection, kept by the pool
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'durable')"))
    async with db.write(durable=False) as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (2, 'redoable')"))
    loop_thread = threading.get_ident()
    assert len(commits) == 2
    assert commits[0] != loop_thread
    assert commits[1] == loop_thread
    assert await count(db) == 2
