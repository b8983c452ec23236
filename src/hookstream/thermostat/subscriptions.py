"""Plant subscriptions: an application's endpoint for a plant's notifications.

A subscription is backed by a connector of system ``subscription`` (hidden from the
connector API): the engine gives it signatures, retries, per-plant ordering and the attempt
log. Before it exists, its endpoint must answer a validation event with a 2xx (Azure Event
Grid's handshake: ``aeg-event-type: SubscriptionValidation``); one that echoes the code is
marked verified.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.ids import new_id, now_ms
from hookstream.pipeline.deliver.attempt import attempt
from hookstream.pipeline.deliver.client import AttemptResult, Sender
from hookstream.pipeline.deliver.retry import RetryPolicy
from hookstream.pipeline.deliver.signing import new_secret, secret_key
from hookstream.pipeline.deliver.webhook import Endpoint
from hookstream.pipeline.queue import toggle
from hookstream.services.audit import audit
from hookstream.services.runtime import Runtime
from hookstream.storage.repository import Repository
from hookstream.thermostat.changes import THERMOSTAT_KIND
from hookstream.thermostat.state import validation_answered, validation_body

SYSTEM = "subscription"
EVENT_TYPE_HEADER = "aeg-event-type"
# Event Grid's header on every notification; receivers written for it dispatch on it.
NOTIFICATION_HEADERS = {EVENT_TYPE_HEADER: "Notification"}


@dataclass(frozen=True, slots=True)
class Validation:
    """What the endpoint answered to the validation event."""

    result: AttemptResult
    verified: bool

    @property
    def accepted(self) -> bool:
        return self.result.succeeded

    def reason(self) -> str:
        r = self.result
        if r.status_code is not None:
            return f"the endpoint answered the validation event with HTTP {r.status_code}"
        return f"the endpoint could not be reached: {r.error}"


async def validate_endpoint(rt: Runtime, url: str, secret: str, plant_id: str) -> Validation:
    """POST the validation event, signed with the subscription's secret."""
    code = secrets.token_urlsafe(24)
    event_id = new_id("evt")
    body = validation_body(event_id, code, plant_id, now_ms())
    s = rt.settings
    endpoint = Endpoint(
        id="validation",
        base_url=url,
        routes={THERMOSTAT_KIND: ""},
        signing_key=secret_key(secret),
        policy=RetryPolicy(s.retry_schedule, 0.0),
        headers={EVENT_TYPE_HEADER: "SubscriptionValidation"},
    )
    sender = Sender.from_settings(s, max_connections=1)
    try:
        result = await attempt(sender, endpoint, THERMOSTAT_KIND, event_id, body)
    finally:
        await sender.close()
    answer = (result.response_body or "").encode()
    return Validation(result, result.succeeded and validation_answered(answer, code))


async def create_subscription(
    rt: Runtime,
    *,
    org_id: str,
    plant_id: str,
    client_id: str,
    url: str,
    secret: str,
    verified: bool,
) -> dict[str, Any]:
    """Store the subscription and its connector; returns the contract's 201 body."""
    now = now_ms()
    subscription_id, connector_id = new_id("sub"), new_id("con")
    async with rt.db.write() as conn:
        repo = Repository(conn)
        await repo.insert_connector(
            id=connector_id,
            org_id=org_id,
            name=f"subscription {subscription_id}",
            base_url=url,
            route_values="",
            route_events="",
            route_alarms="",
            secret_enc=rt.box.encrypt(secret),
            auth_type="none",
            auth_public='{"type":"none"}',
            headers_enc=rt.box.encrypt(orjson.dumps(NOTIFICATION_HEADERS).decode()),
            header_names=orjson.dumps(sorted(NOTIFICATION_HEADERS)).decode(),
            active=True,
            ordering="per_device",
            system=SYSTEM,
            created_at=now,
            updated_at=now,
        )
        await repo.insert_plant_subscription(
            id=subscription_id,
            org_id=org_id,
            plant_id=plant_id,
            client_id=client_id,
            connector_id=connector_id,
            endpoint_url=url,
            verified=verified,
            created_at=now,
        )
        await audit(repo, org_id, "subscription.created", "subscription", subscription_id, {
            "plantId": plant_id, "clientId": client_id, "endpointUrl": url,
            "verified": verified,
        })
    return {
        "plantId": plant_id,
        "subscriptionId": subscription_id,
        "EndPointUrl": url,
        "signingSecret": secret,
    }


def new_signing_secret() -> str:
    return new_secret()


async def end_subscriptions(repo: Repository, org_id: str, rows: Any, now: int) -> int:
    """End subscriptions: no more notifications; queued ones are cancelled."""
    ended = 0
    for row in rows:
        await toggle.cancel_open(repo, row.connector_id, now)  # deliveries first, as workers
        await repo.delete_connector(org_id, row.connector_id, now)
        if await repo.delete_plant_subscription(row.id, now):
            ended += 1
            await audit(repo, org_id, "subscription.deleted", "subscription", row.id)
    return ended
