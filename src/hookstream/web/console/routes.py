"""Every route of the console's core, in one router (plug-ins add their pages)."""

from __future__ import annotations

from fastapi import APIRouter

from hookstream.web.console import (
    audit,
    connector_edit,
    connectors,
    logs,
    overview,
    pages,
    transforms,
    web,
)

router = APIRouter(include_in_schema=False)
for module in (pages, web, overview, connectors, connector_edit, logs, audit,
               transforms):
    router.include_router(module.router)
