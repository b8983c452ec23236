"""``hookstream receive``: a small webhook server that checks signatures, prints what came and
can store it.

Each accepted webhook (signature verified with ``--secret``, or any request without it) is
printed as ``POST /path webhook-id=msg_... (signature verified) {json}`` and answered
``--status`` (204). With ``--store FILE`` it is first written to a SQLite file, before the
answer leaves, in the table::

    webhooks(webhook_id TEXT PRIMARY KEY, received_at INTEGER (ms), method TEXT,
             path TEXT (with the query string), signature TEXT ('verified' | 'unsigned'),
             headers TEXT (JSON object, lower-case names), body BLOB (the bytes as sent))

A batch is one webhook whose body is a JSON array, stored as it came in one row; its messages
are ``SELECT value FROM webhooks, json_each(CAST(body AS TEXT))`` (the body is a BLOB, which
SQLite's JSON functions do not read as text).

De-duplication: hookstream keeps one ``webhook-id`` per message (or batch) across attempts and
replays, so a webhook whose id was already accepted with a 2xx (stored in the file, or seen in
this run without ``--store``) is answered as usual, not stored again, and printed with
``(duplicate)``. A webhook answered with a non-2xx ``--status`` is not stored: its sender will
retry it, so the retry is not a duplicate.

A request without ``webhook-id`` is refused with 400 when ``--secret`` is set (it cannot be
verified); without ``--secret`` it is accepted and stored under ``none-<uuid>``, never a
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson
from aiohttp import web

from hookstream.errors import StorageError
from hookstream.pipeline.deliver.signing import SignatureMismatch, verify

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    webhook_id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    signature TEXT NOT NULL CHECK (signature IN ('verified', 'unsigned')),
    headers TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


@dataclass(frozen=True)
class Webhook:
    """One accepted request, as stored."""

    webhook_id: str
    received_at: int
    method: str
    path: str
    signature: str
    headers: dict[str, str]
    body: bytes


class WebhookStore:
    """Accepted webhooks in a SQLite file; every call runs on one thread of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # One thread owns the connection, so calls are serialised without a lock and the
        # event loop never waits for an fsync.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookstream-store")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> WebhookStore:
        """Open (or create, with its folder) the file; raises StorageError saying why not."""
        store = cls(path)
        try:
            await store._call(store._open)
        except (OSError, sqlite3.Error) as exc:
            store._thread.shutdown()
            raise StorageError(f"cannot use --store {path}: {exc}") from exc
        return store

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each INSERT is its own transaction, durable when it returns.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, not wal")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the store is closed")
        return self._conn

    def _add(self, hook: Webhook) -> bool:
        cursor = self._connection().execute(
            "INSERT INTO webhooks (webhook_id, received_at, method, path, signature, headers,"
            " body) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id) DO NOTHING",
            (hook.webhook_id, hook.received_at, hook.method, hook.path, hook.signature,
             orjson.dumps(hook.headers).decode(), hook.body),
        )
        return cursor.rowcount == 1

    def _contains(self, webhook_id: str) -> bool:
        row = self._connection().execute(
            "SELECT 1 FROM webhooks WHERE webhook_id = ?", (webhook_id,)
        ).fetchone()
        return row is not None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def add(self, hook: Webhook) -> bool:
        """Store ``hook``; False when its webhook-id is already stored (nothing written)."""
        return await self._call(self._add, hook)

    async def contains(self, webhook_id: str) -> bool:
        return await self._call(self._contains, webhook_id)

    async def close(self) -> None:
        try:
            await self._call(self._close)
        finally:
            self._thread.shutdown(wait=True)


@dataclass
class Tally:
    """What the receiver saw: accepted webhooks (duplicates included), duplicates, refusals."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0

    def summary(self) -> str:
        return f"received {self.accepted} webhooks ({self.duplicates} duplicates)"


def make_app(secret: str | None, emit: Callable[[str], None], done: asyncio.Event,
             count: int | None, *, status: int = 204, store: WebhookStore | None = None,
             quiet: bool = False, tally: Tally | None = None) -> web.Application:
    if not 200 <= status <= 599:
        raise ValueError(f"status must be 200 to 599, not {status}")
    counts = tally if tally is not None else Tally()
    answer_ok = 200 <= status < 300
    # Without a file, duplicates are recognised within this run by id (ids only, no bodies).
    seen_ids: set[str] = set()

    def refuse(request: web.Request, code: int, why: str) -> web.Response:
        counts.rejected += 1
        emit(f"REJECTED {request.method} {request.path}: {why}")
        return web.json_response({"error": why}, status=code)

    async def is_duplicate(hook: Webhook, has_id: bool) -> bool:
        """Record an accepted webhook (when answered 2xx); True if its id was already there."""
        if store is None:
            if not has_id:
                return False
            repeat = hook.webhook_id in seen_ids
            if answer_ok:
                seen_ids.add(hook.webhook_id)
            return repeat
        if answer_ok:
            return not await store.add(hook)
        return has_id and await store.contains(hook.webhook_id)

    async def handle(request: web.Request) -> web.Response:
        received_at = int(time.time() * 1000)
        body = await request.read()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            # Repeated header lines are one comma-separated value (RFC 9110, 5.3).
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        webhook_id = headers.get("webhook-id", "")
        if secret is not None:
            if not webhook_id:
                return refuse(request, 400, "the webhook-id header is missing")
            try:
                verify(secret, headers, body, now=received_at // 1000)
            except SignatureMismatch as exc:
                return refuse(request, 401, str(exc))
        hook = Webhook(
            webhook_id=webhook_id or f"none-{uuid.uuid4()}", received_at=received_at,
            method=request.method, path=request.path_qs,
            signature="verified" if secret is not None else "unsigned",
            headers=headers, body=body,
        )
        try:
            duplicate = await is_duplicate(hook, bool(webhook_id))
        except sqlite3.Error as exc:
            # Not stored, so not accepted: a 500 makes the sender try again later.
            emit(f"ERROR {request.method} {request.path} webhook-id={webhook_id or '-'}: "
                 f"cannot store it: {exc}")
            return web.json_response({"error": "cannot store the webhook"}, status=500)
        counts.accepted += 1
        counts.duplicates += duplicate
        if not quiet:
            try:
                shown = orjson.dumps(orjson.loads(body)).decode()
            except orjson.JSONDecodeError:
                shown = body[:200].decode("utf-8", "replace")
            how = "signature verified" if secret is not None else "unsigned"
            emit(f"{request.method} {request.path} webhook-id={webhook_id or '-'} ({how})"
                 f"{' (duplicate)' if duplicate else ''} {shown}")
        if count is not None and counts.accepted >= count:
            done.set()
        return web.Response(status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.contextmanager
def _stop_on_signals(done: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``done``: the receiver closes its file and exits cleanly."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows' loop, nor outside the main thread: then signals act as usual.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, done.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve(host: str, port: int, secret: str | None, count: int | None,
                emit: Callable[[str], None], *, status: int = 204, store: Path | None = None,
                quiet: bool = False, sock: socket.socket | None = None) -> Tally:
    """Receive until ``count`` webhooks were accepted or SIGINT/SIGTERM; then print the tally.

    ``sock``, when given, is listened on instead of ``host:port``.
    """
    if not 200 <= status <= 599:
        raise ValueError(f"status must be 200 to 599, not {status}")
    done = asyncio.Event()
    tally = Tally()
    # Signals are handled until the file is closed: a second Ctrl-C cannot interrupt that.
    with _stop_on_signals(done):
        opened = await WebhookStore.open(store) if store is not None else None
        try:
            app = make_app(secret, emit, done, count, status=status, store=opened, quiet=quiet,
                           tally=tally)
            # A short graceful shutdown: answers in flight finish, a stuck client cannot hold us.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
            await runner.setup()
            try:
                site = (web.SockSite(runner, sock) if sock is not None
                        else web.TCPSite(runner, host, port))
                await site.start()
                if sock is not None:
                    host, port = sock.getsockname()[:2]
                checking = "checking signatures" if secret else "not checking signatures"
                storing = f", storing in {store}" if store is not None else ""
                emit(f"listening on http://{host}:{port} ({checking}{storing})")
                await done.wait()
                await asyncio.sleep(0.1)  # let the last answer leave
            finally:
                await runner.cleanup()
        finally:
            if opened is not None:
                await opened.close()
    emit(tally.summary())
    return tally
