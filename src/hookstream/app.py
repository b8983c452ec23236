"""The ASGI application: management API, ingest, OAuth2, thermostat cloud, console, health."""

from __future__ import annotations

import logging

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
from hookstream.ingest import http as ingest_http
from hookstream.ingest.message import DatastreamMessage
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
