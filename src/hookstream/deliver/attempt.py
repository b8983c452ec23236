"""One attempt to deliver a body to an endpoint: headers, authentication, POST.

The worker and the connector test button both go through ``attempt``.
"""

from __future__ import annotations

import time

from hookstream.deliver.client import AttemptResult, Sender
from hookstream.deliver.webhook import Endpoint, webhook_headers


async def attempt(
    sender: Sender, endpoint: Endpoint, kind: str, webhook_id: str, body: bytes
) -> AttemptResult:
    """POST ``body`` to the endpoint's route for ``kind``, signed, with its authentication."""
    headers = webhook_headers(endpoint, webhook_id, int(time.time()), body)
    return await sender.post(endpoint.url_for(kind), headers, body)
