"""Ingest requests that arrive together share a transaction, and each is answered once stored."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import Org, Receiver, Service


def value(i: int) -> dict[str, Any]:
    return {"deviceId": f"dev-{i % 5}", "property": "energy",
            "timestamp": 1_767_225_600_000 + i, "payload": i}


async def test_concurrent_requests_share_commits_and_every_202_is_stored(
    service: Service, org: Org, receiver: Receiver
) -> None:
    gw = await org.gateway()
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], ["values"], [gw["id"]])
    intake = service.runtime.intake
    commits, requests = intake.commits, intake.requests
    answers = await asyncio.gather(*(
        org.ingest(gw["ingestToken"], "values", [value(i), value(1000 + i)]) for i in range(60)
    ))
    assert [a.status_code for a in answers] == [202] * 60
    ids = [i for a in answers for i in a.json()["ids"]]
    assert len(set(ids)) == 120
    assert intake.requests - requests == 60
    assert intake.commits - commits < 60  # some requests shared a transaction
    await receiver.wait_for(120)
    assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(ids)
    # Each request's messages keep their order and their own ids.
    first = answers[0].json()["ids"]
    stored = (await org.api.get(f"/api/v1/messages/{first[1]}")).json()
    assert stored["message"]["payload"] == 1000
