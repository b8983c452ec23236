"""The ASGI application: management API, ingest, console, health, and the plug-ins' routes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI

from hookstream import __version__
from hookstream.pipeline.message import DatastreamMessage
from hookstream.services.runtime import Runtime
from hookstream.web import ingest
from hookstream.web.api import (
    alerts,
    audit,
    connectors,
    docs,
    errors,
    gateways,
    health,
    logs,
    organizations,
    replay,
    transforms,
)
from hookstream.web.api.limits import BodyLimit
from hookstream.web.console import pages as console_pages
from hookstream.web.console import routes as console_routes
from hookstream.web.console.sessions import CsrfRejected

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
        openapi_tags=list(docs.TAGS),
    )
    app.state.runtime = runtime
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.api_max_body_bytes)
    # Outermost but for Starlette's error middleware: ingest skips the router (web/ingest.py).
    app.add_middleware(ingest.IngestLane, runtime=runtime)
    errors.install(app)
    for module in (organizations, gateways, connectors, alerts, logs, replay, transforms,
                   health):
        app.include_router(module.router)
    app.include_router(connectors.triggers_router)
    app.include_router(ingest.router)
    app.include_router(console_routes.router)  # sign-in and every console page
    app.add_exception_handler(CsrfRejected, console_pages.csrf_rejected)
    for router in (organizations.own, audit.router):
        app.include_router(router)
    # The plug-ins' routes (the thermostat cloud: its API, OAuth2 server and console pages).
    plugin_pages = APIRouter(include_in_schema=False)
    for plugin in runtime.plugins:
        if plugin.mount is not None:
            plugin.mount(app, plugin_pages)
    app.include_router(plugin_pages)

    original_openapi = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {})[
                "DatastreamMessage"
            ] = DatastreamMessage.model_json_schema(ref_template="#/components/schemas/{model}")
            errors.document_errors(schema, app)
            docs.untitle_responses(schema)
            docs.plain_parameters(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
