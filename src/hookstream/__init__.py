"""hookstream: what IoT gateways report, delivered to your web servers as signed webhooks.

The layers, lowest first; a module imports its own layer and those below it, never one above
(``tests/test_layers.py`` reads every import with ``ast`` and fails on one that runs up)::

    composition  cli, roles, __main__   what a command starts; plug-ins loaded by entry point
    plug-ins     thermostat/            the thermostat cloud: plants, Smarther API, OAuth2
                                        server, an intake hook; mounted, never imported below
    adapters     web/                   the app, thin API routers (web/api), the console;
                                        both call the services, never each other
                 mqtt/                  the MQTT bridge (gateways publish here)
                 tools/                 simulate, the fleet simulator, the webhook receiver
    services     services/              one module per resource (organizations, gateways,
                                        connectors, triggers, logs, replay), request schemas;
                                        runtime, plug-in loading, audit, health, users, rekey
    pipeline     pipeline/              the flow a message takes:
                   message.py             the datastream message format
                   ingest/                one intake (group commit, idempotency, hooks); auth
                   route/                 which connectors a message goes to
                   queue/                 one enqueue; claim with a lease; fairness; wake-up
                   deliver/               sign, authenticate, POST; retry policy; address guard
                   record/                attempts and outcomes in batches; alerts, replay,
                                          retention, queue sampling
                   worker.py              claim -> deliver -> record
    storage      storage/, security/    tables, named queries, repository, migrations;
                                        passwords, the secret box, rate limits
    foundation   errors, models (enums and typed records), kinds, ids, settings, logs,
                 metrics, readiness, heap (the garbage collector), tracing (OpenTelemetry)
"""

from __future__ import annotations

__version__ = "0.1.0"
