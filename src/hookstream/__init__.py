"""hookstream: what IoT gateways report, delivered to your web servers as signed webhooks.

The flow is visible in the package layout::

    ingest/   accept a gateway's messages (HTTP) and validate the datastream format
    route/    decide which connectors a message goes to
    queue/    claim due deliveries with a lease; wake-up hints
    deliver/  sign, authenticate and POST; the retry policy; the outgoing-address guard
    record/   write attempts and delivery outcomes back in batches
    api/      the management API (organizations, gateways, connectors, triggers, logs)
    storage/  the database: tables, named queries, repository, migrations
"""

from __future__ import annotations

__version__ = "0.1.0"
