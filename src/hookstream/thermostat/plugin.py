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
# The thermostat cloud's resources in /openapi.json, after the datastream's.
TAGS: list[dict[str, Any]] = [
    {"name": "plants", "description": "Thermostat cloud: plants (homes, buildings)."},
    {"name": "modules", "description": "Thermostat cloud: a plant's chronothermostat modules, "
                                       "linked to the datastream messages that report them."},
    {"name": "oauth-clients", "description": "Thermostat cloud: the third-party applications "
                                             "that may ask users for access."},
    {"name": "subscription-keys", "description": "Thermostat cloud: the keys every Smarther "
                                                 "API call carries (Ocp-Apim-Subscription-Key)."},
    {"name": "oauth2", "description": "Thermostat cloud: the OAuth2 authorization server "
                                      "(code grant with PKCE, refresh, revocation)."},
    {"name": "smarther", "description": "Thermostat cloud: the Smarther v2.0 compatible API "
                                        "(its own error shape, SmartherError)."},
]


async def fold_reports(repo: Repository, message_rows: list[dict[str, Any]], now: int) -> int:
    """The intake hook (imported on first use: a delivery worker never needs it)."""
    from hookstream.thermostat.changes import fold_reports as fold

    return await fold(repo, message_rows, now)


def mount(app: Any, console: Any) -> None:
    """Mount the thermostat cloud's routes on the web application and the console."""
    from hookstream.thermostat.api import developers, oauth2, plants, smarther
    from hookstream.thermostat.console import router as console_pages
    from hookstream.web.api import docs, errors

    docs.add_tags(app, TAGS)
    errors.add_shape(app, SMARTHER_PREFIX, smarther.error_body, "SmartherError",
                     smarther.ERROR_SCHEMA)
    for router in (oauth2.router, plants.router, plants.modules_router, developers.clients,
                   developers.keys, smarther.router):
        app.include_router(router)
    console.include_router(console_pages)


plugin = Plugin(
    name="thermostat",
    intake_hooks=(fold_reports,),
    mount=mount,
    console_links=(("plants", "/console/plants", "Plants"),
                   ("developers", "/console/developers", "Developers")),
)
