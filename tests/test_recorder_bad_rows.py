"""The recorder writes what it can: one outcome the database refuses does not stop the others."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import web

from hookstream.pipeline.deliver.client import AttemptResult
from hookstream.pipeline.queue.claimer import Claimer
from hookstream.pipeline.record.recorder import Outcome, Recorder
from hookstream.settings import Settings
from tests.support import Org, Received, Service, eventually, running_receiver, running_service


def value(i: int) -> dict[str, Any]:
    return {"deviceId": "d", "property": "p", "timestamp": 1_767_225_600_000 + i, "payload": i}


async def test_a_receiver_answering_nul_bytes_is_recorded(service: Service, org: Org) -> None:
    async def nul(_: Received, __: int) -> web.Response:
        return web.Response(status=200, body=b"ok\x00\x00done")

    async with running_receiver(nul) as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        (mid,) = (await org.ingest(gw["ingestToken"], "values", value(1))).json()["ids"]
        await rec.wait_for(1)

        async def delivered() -> bool:
            (d,) = await org.deliveries()
            return bool(d["messageId"] == mid and d["status"] == "delivered")

        await eventually(delivered, what="the delivery recorded as delivered")
    (d,) = await org.deliveries()
    attempts = (await org.api.get(f"/api/v1/deliveries/{d['id']}")).json()["attempts"]
    assert attempts[0]["responseBody"] == "ok\ufffd\ufffddone"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_one_outcome_the_database_refuses_does_not_stop_the_rest(
    settings: Settings,
) -> None:
    async with running_service(settings, worker=False) as svc, running_receiver() as rec:
        org = await svc.new_org()
        gw = await org.gateway()
        con = await org.connector(rec.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(3)])
        claimed, _ = await Claimer(svc.runtime.db, 60, 64).claim(10)
        assert len(claimed) == 3
        recorder = Recorder(svc.runtime.db, batch=10, flush_ms=5)
        now = time.time()
        outcomes = [
            Outcome(c.id, c.lease_id, "delivered", 1, 0,
                    # 2**40 does not fit PostgreSQL's integer column: that row is refused.
                    AttemptResult(now, 3, status_code=2**40 if i == 1 else 204),
                    connector_id=c.connector_id, message_id=c.message_id)
            for i, c in enumerate(claimed)
        ]
        await recorder._write_until_done(outcomes)
        status = {d["id"]: d["status"] for d in await org.deliveries()}
        await org.api.aclose()
    assert [status[c.id] for c in claimed] == ["delivered", "pending", "delivered"]
