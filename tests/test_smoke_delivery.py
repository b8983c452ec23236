from __future__ import annotations

from tests.support import Org, Receiver


async def test_a_value_reaches_the_receiver(org: Org, receiver: Receiver) -> None:
    gw = await org.gateway()
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], ["values"], [gw["id"]])
    resp = await org.ingest(gw["ingestToken"], "values",
                            {"deviceId": "d1", "property": "t", "timestamp": 1, "payload": 1})
    assert resp.status_code == 202, resp.text
    await receiver.wait_for(1)
    assert receiver.received[0].path == "/values"
