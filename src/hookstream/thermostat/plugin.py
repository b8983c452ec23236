"""The thermostat cloud as a plug-in: its intake hook and its routes.

The pipeline never imports this package. The composition finds it by its entry point
(``hookstream.plugins``, see ``services.plugins``); the intake then folds each ingested
report into the state of the thermostat modules linked to its gateway, in the ingest
transaction, and the web application mounts the plants and modules API, the OAuth2
authorization server, the Smarther-compatible API (answering errors in the original's
``{"statusCode", "message"}`` shape) and the console's plants and developers pages.
"""

from __future__ import annotations

from typing import Any

from hookstream.services.plugins import Plugin
from hookstream.storage.repository import Repository

SMARTHER_PREFIX = "/smarther/"


async def fold_reports(repo: Repository, message_rows: list[dict[str, Any]], now: int) -> int:
    """The intake hook (imported on first use: a delivery worker never needs it)."""
    from hookstream.thermostat.changes import fold_reports as fold

    return await fold(repo, message_rows, now)


def mount(app: Any, console: Any) -> None:
    """Mount the thermostat cloud's routes on the web application and the console."""
    from hookstream.thermostat.api import developers, oauth2, plants, smarther
    from hookstream.thermostat.console import router as console_pages
    from hookstream.web.api import errors

    errors.add_shape(app, SMARTHER_PREFIX, smarther.error_body, "SmartherError",
                     smarther.ERROR_SCHEMA)
    for router in (oauth2.router, plants.router, developers.clients, developers.keys,
                   smarther.router):
        app.include_router(router)
    console.include_router(console_pages)


plugin = Plugin(
    name="thermostat",
    intake_hooks=(fold_reports,),
    mount=mount,
    console_links=(("plants", "/console/plants", "Plants"),
                   ("developers", "/console/developers", "Developers")),
)
