"""Batching: many messages in one POST, a JSON array with its own webhook-id."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from hookstream.pipeline.message import FIELDS
from tests.support import Org, Received, eventually, running_receiver


def value(i: int) -> dict[str, Any]:
    return {"deviceId": f"d{i % 3}", "property": "p", "timestamp": 1_700_000_000_000 + i,
            "payload": i}


async def test_a_batch_arrives_as_one_signed_array_and_a_partial_one_after_the_wait(
    org: Org,
) -> None:
    async with running_receiver() as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url, batch={"maxMessages": 10, "maxWaitMs": 300})
        assert con["batch"] == {"maxMessages": 10, "maxWaitMs": 300}
        await org.trigger(con["id"], ["values"], [gw["id"]])
        ids = (await org.ingest(gw["ingestToken"], "values",
                                [value(i) for i in range(25)])).json()["ids"]
        await rec.wait_for(3, timeout=20)
        bodies = [orjson.loads(r.body) for r in rec.received]
        assert sorted(len(b) for b in bodies) == [5, 10, 10]
        assert all(list(item) == list(FIELDS) for b in bodies for item in b)
        sent = [item["payload"] for b in bodies for item in b]
        assert sorted(sent) == list(range(25))
        webhook_ids = {r.headers["webhook-id"] for r in rec.received}
        assert len(webhook_ids) == 3 and not webhook_ids & set(ids)
        for r in rec.received:
            Webhook(con["secret"]).verify(r.body, r.headers)
        dels = await org.deliveries()
        assert {d["batchId"] for d in dels} == webhook_ids


async def test_a_partial_batch_waits_for_max_wait(org: Org) -> None:
    async with running_receiver() as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url, batch={"maxMessages": 50, "maxWaitMs": 800})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        t0 = time.time()
        await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(3)])
        await rec.wait_for(1, timeout=20)
        assert rec.received[0].at - t0 >= 0.7, "a partial batch waits maxWaitMs"
        assert len(orjson.loads(rec.received[0].body)) == 3


async def test_a_batch_is_retried_whole_with_the_same_webhook_id(org: Org) -> None:
    def respond(_: Received, n: int) -> web.Response:
        return web.Response(status=503 if n == 1 else 204)

    async with running_receiver(respond) as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url, batch={"maxMessages": 4, "maxWaitMs": 0},
                                  retry={"schedule": [0.2]})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(4)])
        await rec.wait_for(2, timeout=20)
        first, second = rec.received[0], rec.received[1]
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.body == second.body

        async def delivered() -> bool:
            dels = await org.deliveries()
            return [d["status"] for d in dels] == ["delivered"] * 4

        await eventually(delivered)
        assert all(d["attemptCount"] == 2 for d in await org.deliveries())
