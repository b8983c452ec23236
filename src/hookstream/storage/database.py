"""Connections: SQLite (WAL, one writer at a time) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from hookstream.errors import StorageError
from hookstream.settings import Settings

NOTIFY_CHANNEL = "hookstream_due"


@asynccontextmanager
async def database_errors(url: str) -> AsyncIterator[None]:
    """Turn a failure to reach or use the database into a StorageError naming it."""
    try:
        yield
    except (OSError, SQLAlchemyError, asyncpg.PostgresError) as exc:
        where = make_url(async_url(url)).render_as_string(hide_password=True)
        raise StorageError(f"the database {where} cannot be used: {exc}") from exc


def database_away(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached (not a bad statement or row)."""
    if isinstance(exc, (*_AWAY, SATimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    if exc.statement is None:  # failed while connecting, before any statement
        return True
    cause = exc.orig.__cause__ if exc.orig is not None else None
    return isinstance(cause, _AWAY)


# asyncpg's errors for a server that is restarting, shutting down or gone.
_AWAY = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.ConnectionDoesNotExistError,
)


def async_url(url: str) -> str:
    """The SQLAlchemy URL with the asyncio driver for a ``sqlite:`` or ``postgresql:`` URL."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:"):]
    for prefix in ("postgresql:", "postgres:"):
        if url.startswith(prefix):
            return "postgresql+asyncpg:" + url[len(prefix):]
    return url


def asyncpg_dsn(url: str) -> str:
    """A DSN asyncpg understands, for the LISTEN connection that lives outside the pool."""
    return make_url(async_url(url)).set(drivername="postgresql").render_as_string(
        hide_password=False
    )


class InlineSqlite(aiosqlite.Connection):
    """aiosqlite's interface with every call run at once on the calling thread.

    aiosqlite hands each call to a thread of its own connection and back: ~180 µs a hop,
    ~700 µs a statement through SQLAlchemy (against 3 µs for sqlite3 itself; the README's
    benchmark section), and a write transaction holds SQLite's one write lock for all of its
    hops (4-6 ms for an ingest, a claim or a batch of outcomes). Write transactions are short
    statements on indexes, taken one at a time behind the write lock, so running them on the
    event loop costs it less than the hops did, and the lock is held for the statements' own
    time."""

    def __init__(self, connector: Any) -> None:
        super().__init__(connector, iter_chunk_size=64)
        # Every (future, call) put on the queue runs there and then; so does SQLAlchemy's
        # isolation-level setter, which puts on it directly.
        self._tx = _RunNow()  # type: ignore[assignment]
        # Set per transaction (``_configure_sqlite``): its commit waits for the disk.
        self.flushes = True

    async def commit(self) -> None:
        """Commit; a commit that waits for the disk does so in a thread, so the loop goes on
        meanwhile (an ingest's group commit gathers the requests that arrive during it)."""
        if self.flushes:
            await asyncio.to_thread(self._conn.commit)
        else:
            self._conn.commit()

    def __await__(self) -> Generator[Any, None, InlineSqlite]:
        # Connects without starting aiosqlite's thread.
        return self._connect().__await__()  # type: ignore[return-value]


class _RunNow:
    """Stands for aiosqlite's queue to its thread: runs each call as it is put."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Any]) -> None:
        future, call = item
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            if future is not None and not future.done():
                future.set_exception(exc)
        else:
            if future is not None and not future.done():
                future.set_result(result)


class Database:
    """The engines and the two ways in: ``write()`` (a transaction) and ``read()``.

    On SQLite, writes run on the event loop (``InlineSqlite``) and reads on aiosqlite's
    threads, where a long read (a page of the message log) does not hold up the loop."""

    def __init__(self, settings: Settings, *, pool_size: int = 10) -> None:
        self.settings = settings
        self.url = async_url(settings.database_url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            db_path = make_url(self.url).database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["pool_size"] = pool_size
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._writer: AsyncEngine = self.engine
        # SQLite has one writer at a time. Writers of this process queue here instead of in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms between tries; writers
        # of other processes on the same file (serve's worker processes) queue on a file lock
        # beside it, for the same reason.
        self._write_lock: asyncio.Lock | None = None
        self._file_lock: FileLock | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine, settings.sqlite_synchronous)
            cargs, cparams = self.engine.dialect.create_connect_args(make_url(self.url))
            args: list[Any] = list(cargs)
            params: dict[str, Any] = {**cparams, "timeout": 30, "check_same_thread": False}

            async def inline() -> InlineSqlite:
                return await InlineSqlite(lambda: sqlite3.connect(*args, **params))

            # Writes are taken one at a time (the lock below): one connection serves them.
            self._writer = create_async_engine(self.url, async_creator=inline, pool_size=1)
            _configure_sqlite(self._writer, settings.sqlite_synchronous)
            self._write_lock = asyncio.Lock()
            if db_path and db_path != ":memory:":
                self._file_lock = FileLock(Path(db_path).with_name(Path(db_path).name + ".lock"))

    @asynccontextmanager
    async def write(self, *, durable: bool = True) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends without error.

        ``durable=False`` is for what the pipeline can redo (a claim, a batch of outcomes):
        on SQLite its commit is not flushed to disk (``synchronous=NORMAL``; a killed process
        loses nothing, a power cut may lose it and the next flush of any durable commit
        covers it), so an accepted message costs one flush, not three. On PostgreSQL every
        commit waits for its flush.
        """
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            if self._file_lock is not None:
                await self._file_lock.acquire()
            try:
                async with self._writer.connect() as conn:
                    if not durable:
                        conn = await conn.execution_options(hookstream_durable=False)
                    async with conn.begin():
                        yield conn
            finally:
                if self._file_lock is not None:
                    self._file_lock.release()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (on SQLite a deferred transaction that takes no write lock)."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(hookstream_readonly=True)
            yield conn
            await conn.rollback()

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._writer is not self.engine:
            await self._writer.dispose()
        if self._file_lock is not None:
            self._file_lock.close()


# As long as SQLite's own busy_timeout.
LOCK_TIMEOUT = 30.0


class FileLock:
    """An exclusive lock between processes (``flock`` on a file of its own).

    Taken without a thread when free; otherwise a thread waits for it, so the kernel hands it
    over the moment it is released rather than at a polling step. A waiter cancelled meanwhile
    releases the lock once its thread gets it."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    async def acquire(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waiting = asyncio.get_running_loop().run_in_executor(
            None, fcntl.flock, self._fd, fcntl.LOCK_EX)
        try:
            async with asyncio.timeout(LOCK_TIMEOUT):
                await asyncio.shield(waiting)
        except (asyncio.CancelledError, TimeoutError) as exc:
            waiting.add_done_callback(
                lambda f: None if f.cancelled() or f.exception() else self.release())
            if isinstance(exc, TimeoutError):
                raise StorageError(
                    f"another process has held the database's write lock for {LOCK_TIMEOUT:g} s"
                ) from exc
            raise

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own BEGIN handling is switched off; the "begin" hook below issues it.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front: a deferred transaction that later upgrades to a
        # writer can fail with SQLITE_BUSY at once, without waiting for busy_timeout.
        options = conn.get_execution_options()
        if options.get("hookstream_readonly", False):
            conn.exec_driver_sql("BEGIN")
            return
        if synchronous == "full":
            # Set per transaction (read at its commit), only when it changes: a worker
            # process writes nothing durable, an API process little that is not.
            want = "FULL" if options.get("hookstream_durable", True) else "NORMAL"
            info = conn.connection.info
            if info.get("hookstream_synchronous", "FULL") != want:
                conn.exec_driver_sql(f"PRAGMA synchronous={want}")
                info["hookstream_synchronous"] = want
        driver = conn.connection.driver_connection
        if isinstance(driver, InlineSqlite):
            driver.flushes = synchronous == "full" and options.get("hookstream_durable", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migration_engine(settings: Settings) -> AsyncEngine:
    """A short-lived engine for migrations (no pool kept)."""
    url = async_url(settings.database_url)
    if url.startswith("sqlite"):
        db_path = make_url(url).database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, poolclass=NullPool)
    if url.startswith("sqlite"):
        _configure_sqlite(engine, settings.sqlite_synchronous)
    return engine
