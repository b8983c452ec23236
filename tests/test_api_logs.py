"""The message log's filters, one message by id, and the service's own endpoints."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.api_checks import error_of, message
from tests.support import Org, Service


def rfc3339(ms: int, offset_hours: int = 0) -> str:
    """``ms`` as an RFC 3339 time with the given offset from UTC."""
    zone = timezone(timedelta(hours=offset_hours))
    return datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="milliseconds")


async def device_ids(org: Org, **params: Any) -> list[str]:
    resp = await org.api.get("/api/v1/messages", params=params)
    assert resp.status_code == 200, resp.text
    return sorted(m["message"]["deviceId"] for m in resp.json()["items"])


async def test_the_message_log_filters_by_gateway_device_kind_and_time(org: Org) -> None:
    g1, g2 = await org.gateway("G1"), await org.gateway("G2")
    t1, t2 = g1["ingestToken"], g2["ingestToken"]
    assert (await org.ingest(t1, "values", [message("a"), message("b")])).status_code == 202
    assert (await org.ingest(t2, "events", message("c"))).status_code == 202
    # `middle` is a millisecond of its own: after the first three, before the last two.
    await asyncio.sleep(0.02)  # deliberate interval: the messages so far are older
    middle = int(time.time() * 1000)
    await asyncio.sleep(0.02)  # deliberate interval: the next messages are newer
    assert (await org.ingest(t1, "alarms", message("a"))).status_code == 202
    assert (await org.ingest(t2, "values", message("d"))).status_code == 202
    end = int(time.time() * 1000) + 1

    assert await device_ids(org) == ["a", "a", "b", "c", "d"]
    assert await device_ids(org, gatewayId=g1["id"]) == ["a", "a", "b"]
    assert await device_ids(org, gatewayId=g2["id"]) == ["c", "d"]
    assert await device_ids(org, deviceId="a") == ["a", "a"]
    assert await device_ids(org, kind="values") == ["a", "b", "d"]
    assert await device_ids(org, kind="alarms") == ["a"]
    assert await device_ids(org, gatewayId=g1["id"], kind="values", deviceId="b") == ["b"]
    assert await device_ids(org, deviceId="nobody") == []
    assert await device_ids(org, since=rfc3339(middle)) == ["a", "d"]
    assert await device_ids(org, until=rfc3339(middle)) == ["a", "b", "c"]
    # The same instant with another offset is the same filter.
    assert await device_ids(org, since=rfc3339(middle, 2)) == ["a", "d"]
    assert await device_ids(org, since=rfc3339(middle), until=rfc3339(end)) == ["a", "d"]
    assert await device_ids(org, since=rfc3339(end)) == []
    # Far but valid times are an empty answer, not an error.
    assert await device_ids(org, since="9999-12-31T23:59:59-23:59") == []
    assert await device_ids(org, until="0001-01-01T00:00:00+23:59") == []
    # Newest first.
    items = (await org.api.get("/api/v1/messages")).json()["items"]
    assert [m["message"]["deviceId"] for m in items[:2]] == ["d", "a"]


async def test_the_message_log_pages(org: Org) -> None:
    gw = await org.gateway()
    sent = (await org.ingest(gw["ingestToken"], "values",
                             [message(f"d{i}") for i in range(5)])).json()["ids"]
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await org.api.get("/api/v1/messages", params=params)).json()
        seen += [m["id"] for m in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert cursor is None
    assert sorted(seen) == sorted(sent) and len(seen) == 5


async def test_bad_message_log_filters_are_422(org: Org, subtests: pytest.Subtests) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-13-01T00:00:00Z"}, "since"),
        ({"until": "2026-01-31 12:00"}, "until"),  # no offset: ambiguous
        ({"until": "1700000000000"}, "until"),
        ({"kind": "logs"}, "kind"),
    ]
    for params, named in cases:
        with subtests.test(str(params)):
            error_of(await org.api.get("/api/v1/messages", params=params), 422, names=(named,))
    error_of(await org.api.get("/api/v1/deliveries", params={"status": "lost"}), 422,
             names=("status",))
    error_of(await org.api.get("/api/v1/deliveries", params={"since": "soon"}), 422,
             names=("since",))


async def test_health_readiness_metrics_and_openapi(service: Service, org: Org) -> None:
    gw = await org.gateway()
    assert (await org.ingest(gw["ingestToken"], "values", message())).status_code == 202

    resp = await service.client.get("/healthz")
    assert resp.status_code == 200, resp.text
    resp = await service.client.get("/readyz")
    assert resp.status_code == 200, resp.text
    resp = await service.client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    assert "hookstream_messages_ingested_total" in resp.text
    samples = [line for line in resp.text.splitlines()
               if line.startswith("hookstream_messages_ingested_total{")
               and 'kind="values"' in line]
    assert samples and float(samples[0].rsplit(" ", 1)[1]) >= 1

    resp = await service.client.get("/openapi.json")
    assert resp.status_code == 200, resp.text
    paths = resp.json()["paths"]
    for path in ("/ingest/v1/{kind}", "/api/v1/connectors", "/api/v1/gateways",
                 "/api/v1/organizations", "/api/v1/messages", "/api/v1/deliveries"):
        assert path in paths, f"{path} not in the OpenAPI document"
    assert (await service.client.get("/docs")).status_code == 200
    error_of(await service.client.get("/api/v1/nothing-here"), 404, "not_found")
    error_of(await service.client.put("/healthz"), 405)
