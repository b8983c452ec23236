"""Per-device ordering: one device's messages arrive strictly in ingest order."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import web

from tests.support import Org, Received, eventually, running_receiver


def value(device: str, n: int) -> dict[str, Any]:
    return {"deviceId": device, "property": "seq", "timestamp": 1_700_000_000_000 + n,
            "payload": n}


class OrderedReceiver:
    """Fails chosen messages, answers the rest after a random pause, and checks that no
    device ever has two requests open at once."""

    def __init__(self, fail: dict[tuple[str, int], int]) -> None:
        self.fail = fail  # (device, payload) -> how many times to answer 500
        self.open: dict[str, int] = defaultdict(int)
        self.overlaps = 0
        self.rng = random.Random(7)

    async def respond(self, r: Received, nth: int) -> web.Response:
        body = orjson.loads(r.body)
        device = body["deviceId"]
        self.open[device] += 1
        if self.open[device] > 1:
            self.overlaps += 1
        try:
            await asyncio.sleep(self.rng.uniform(0, 0.01))  # pacing: random answer times
            if nth <= self.fail.get((device, body["payload"]), 0):
                return web.Response(status=500)
            return web.Response(status=204)
        finally:
            self.open[device] -= 1


def arrivals(received: list[Received]) -> dict[str, list[int]]:
    """Per device, payloads in arrival order with retries of the same message collapsed."""
    seen: dict[str, list[int]] = defaultdict(list)
    for r in received:
        body = orjson.loads(r.body)
        order = seen[body["deviceId"]]
        if not order or order[-1] != body["payload"]:
            order.append(body["payload"])
    return seen


async def test_per_device_order_holds_under_concurrency_and_a_failure_in_the_middle(
    org: Org,
) -> None:
    devices = [f"dev-{i}" for i in range(5)]
    # dev-1's 3rd message fails twice then succeeds; dev-2's 5th fails for good.
    check = OrderedReceiver({("dev-1", 3): 2, ("dev-2", 5): 99})
    async with running_receiver(check.respond) as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url, ordering="per_device",
                                  retry={"schedule": [0.2], "maxAttempts": 3})
        assert con["ordering"] == "per_device"
        await org.trigger(con["id"], ["values"], [gw["id"]])
        for batch in range(2):
            msgs = [value(d, batch * 10 + n) for n in range(10) for d in devices]
            resp = await org.ingest(gw["ingestToken"], "values", msgs)
            assert resp.status_code == 202

        async def settled() -> bool:
            s = [d["status"] for d in await org.deliveries()]
            return len(s) == 100 and "pending" not in s

        await eventually(settled, timeout=60)
        assert check.overlaps == 0, "two requests of one device were open at once"
        got = arrivals(rec.received)
        for d in devices:
            assert got[d] == list(range(20)), f"{d} arrived as {got[d]}"
        statuses = [d["status"] for d in await org.deliveries()]
        assert statuses.count("failed") == 1 and statuses.count("delivered") == 99


async def test_without_ordering_devices_are_not_serialized(org: Org) -> None:
    check = OrderedReceiver({})
    async with running_receiver(check.respond) as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url)
        assert con["ordering"] == "none"
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value("one", n) for n in range(50)])
        await rec.wait_for(50)
        assert check.overlaps > 0, "without ordering one device's messages go in parallel"
