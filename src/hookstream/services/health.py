"""Liveness and readiness, for the API's routes and for processes without the API.

``hookstream worker`` and ``hookstream mqtt`` serve ``/metrics``, ``/healthz`` and ``/readyz`` on
``HOOKSTREAM_METRICS_LISTEN`` from a thread (a scrape or a probe never waits for the event loop
to be free, except the database check of ``/readyz``, which runs on it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from sqlalchemy import text

from hookstream.readiness import Readiness
from hookstream.storage.database import Database

# /readyz from the thread gives the database this long to answer.
READY_CHECK_SECONDS = 5.0


async def readiness_report(db: Database, readiness: Readiness) -> tuple[int, dict[str, Any]]:
    """``(200, body)`` when the database answers and every role is ready, else ``(503, body)``."""
    try:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return 503, {"status": "unavailable", "roles": readiness.roles,
                     "error": {"code": "database_unavailable", "message": type(exc).__name__}}
    waiting = readiness.waiting
    if waiting:
        what = "; ".join(f"{role}: {why}" for role, why in waiting.items())
        return 503, {"status": "starting", "roles": readiness.roles,
                     "error": {"code": "not_ready", "message": f"waiting for {what}"}}
    return 200, {"status": "ready", "roles": readiness.roles}


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Probes and scrapes are not worth a line each."""


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``listen`` (host:port) from a thread."""

    def __init__(self, listen: str, db: Database, readiness: Readiness) -> None:
        from prometheus_client import make_wsgi_app

        host, _, port = listen.rpartition(":")
        self._metrics = make_wsgi_app()
        self._db = db
        self._readiness = readiness
        self._loop = asyncio.get_running_loop()
        self._server = make_server(host.strip("[]") or "127.0.0.1", int(port), self._app,
                                   server_class=_Server, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            result: Iterable[bytes] = self._metrics(environ, start_response)
            return result
        if path == "/healthz":
            return self._json(start_response, 200, {"status": "ok"})
        if path == "/readyz":
            return self._json(start_response, *self._ready())
        return self._json(start_response, 404, {"error": {
            "code": "not_found", "message": "this port serves /metrics, /healthz and /readyz"}})

    def _ready(self) -> tuple[int, dict[str, Any]]:
        future: concurrent.futures.Future[tuple[int, dict[str, Any]]] | None = None
        try:
            future = asyncio.run_coroutine_threadsafe(
                readiness_report(self._db, self._readiness), self._loop
            )
            return future.result(READY_CHECK_SECONDS)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:  # busy or stopping
            if future is not None:
                future.cancel()
            return 503, {"status": "unavailable", "roles": self._readiness.roles,
                         "error": {"code": "database_unavailable",
                                   "message": type(exc).__name__}}

    @staticmethod
    def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
        data = orjson.dumps(body)
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(data)))])
        return [data]
