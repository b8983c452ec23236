"""Every route of the console, in one router for the application."""

from __future__ import annotations

from fastapi import APIRouter

from hookstream.console import connectors, logs, overview, pages, thermostat, web

router = APIRouter(include_in_schema=False)
for module in (pages, web, overview, connectors, logs, thermostat):
    router.include_router(module.router)
