"""The ASGI application (management API, ingest, health) and the process roles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from hookstream import __version__
from hookstream.api import (
    alerts,
    audit,
    connectors,
    developers,
    errors,
    gateways,
    health,
    logs,
    organizations,
    plants,
    replay,
    smarther,
)
from hookstream.api import oauth2 as oauth2_api
from hookstream.api.limits import BodyLimit
from hookstream.console import pages as console_pages
from hookstream.console import routes as console_routes
from hookstream.console.sessions import CsrfRejected
from hookstream.deliver.worker import Worker
from hookstream.ingest import http as ingest_http
from hookstream.ingest.message import DatastreamMessage
from hookstream.record.retention import Purger
from hookstream.runtime import Runtime

log = logging.getLogger(__name__)

DESCRIPTION = """
hookstream takes what IoT gateways report (values, events, alarms) and delivers it to your
web servers as signed webhooks (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature`).

Authenticate with `Authorization: Bearer <key>`: the admin key manages organizations; an
organization's API key manages its gateways, connectors and triggers and reads its logs;
a gateway's ingest token posts to `/ingest/v1/{kind}`. Errors are
`{"error": {"code", "message", "details"?}}`. Lists are `{"items", "nextCursor"}`.
"""


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="hookstream",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.api_max_body_bytes)
    errors.install(app)
    for module in (organizations, gateways, connectors, alerts, logs, replay, health):
        app.include_router(module.router)
    app.include_router(ingest_http.router)
    app.include_router(oauth2_api.router)
    app.include_router(console_routes.router)  # sign-in and every console page
    app.add_exception_handler(CsrfRejected, console_pages.csrf_rejected)
    for router in (plants.router, developers.clients, developers.keys, smarther.router,
                   organizations.own, audit.router):
        app.include_router(router)

    original_openapi = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {})[
                "DatastreamMessage"
            ] = DatastreamMessage.model_json_schema(ref_template="#/components/schemas/{model}")
            errors.document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: run_roles stops every role in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_server(runtime: Runtime) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(runtime),
        host=runtime.settings.host,
        port=runtime.settings.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="none",
        # A request still running at shutdown gets this long; its work is transactional.
        timeout_graceful_shutdown=10,
    )
    return _Server(config)


def serve_metrics(listen: str) -> None:
    """/metrics on ``listen`` (host:port) from a thread, for a process without the API."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")


async def run_roles(runtime: Runtime, *, api: bool, worker: bool, mqtt: bool = False) -> None:
    """Run the API, a delivery worker and/or the MQTT bridge until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = _uvicorn_server(runtime) if api else None
    tasks: dict[str, asyncio.Task[None]] = {}
    if server is not None:
        tasks["api"] = asyncio.create_task(server.serve())
    if mqtt:
        from hookstream.ingest.mqtt import Bridge

        tasks["mqtt"] = asyncio.create_task(
            Bridge(runtime.settings, runtime.db, runtime.wakeup).run()
        )
    if worker:
        delivery = Worker(runtime.settings, runtime.db, runtime.box, runtime.wakeup)
        tasks["worker"] = asyncio.create_task(delivery.run())
        # Retention runs where workers run (every such process; they share the work).
        tasks["retention"] = asyncio.create_task(Purger(runtime.db, runtime.settings).run())
    if api or runtime.settings.metrics_listen:
        from hookstream.record.queue_sampler import QueueSampler

        tasks["metrics"] = asyncio.create_task(
            QueueSampler(runtime.db, runtime.settings.metrics_sample_seconds).run()
        )
    if not api and runtime.settings.metrics_listen:
        serve_metrics(runtime.settings.metrics_listen)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        # Stop taking requests and MQTT messages first, then let the worker write what it has.
        if "mqtt" in tasks:
            tasks["mqtt"].cancel()  # finishes the batch it is storing, acks it, disconnects
        if server is not None:
            server.should_exit = True
            await asyncio.gather(tasks["api"], return_exceptions=True)
        if "mqtt" in tasks:
            await asyncio.gather(tasks["mqtt"], return_exceptions=True)
        for role in ("metrics", "retention", "worker"):
            if role in tasks:
                tasks[role].cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for result in results:
        if isinstance(result, Exception):
            raise result
