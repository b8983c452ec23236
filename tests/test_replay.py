"""Replay of a connector's range, cancelling queued deliveries, dead letters, and
``hookstream replay``: real service, real receivers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import hookstream.services.replay as replay_api
from hookstream.pipeline.record.replay import replay_connector
from hookstream.services.times import rfc3339
from hookstream.settings import Settings
from tests.api_checks import error_of
from tests.support import (
    Org,
    Received,
    Receiver,
    base_settings,
    eventually,
    hookstream_cmd,
    running_receiver,
    settings_env,
)


def value(device: str, i: int = 0) -> dict[str, Any]:
    return {"deviceId": device, "property": "temperature", "timestamp": 1_700_000_000_000 + i,
            "payload": 20 + i, "tags": {}}


async def wired(org: Org, receiver: Receiver) -> tuple[dict[str, Any], dict[str, Any]]:
    gw = await org.gateway()
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], ["values"], [gw["id"]])
    return gw, con


async def ingest(org: Org, gw: dict[str, Any], *devices: str) -> list[str]:
    resp = await org.ingest(gw["ingestToken"], "values", [value(d, i) for i, d in
                                                          enumerate(devices)])
    assert resp.status_code == 202, resp.text
    ids: list[str] = resp.json()["ids"]
    await asyncio.sleep(0.01)  # deliberate interval: the next batch has a later millisecond
    return ids


async def settled(org: Org, count: int, **params: Any) -> list[dict[str, Any]]:
    """Wait until ``count`` deliveries match and none is pending; returns them."""
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal found
        found = await org.deliveries(**params)
        return len(found) == count and all(d["status"] != "pending" for d in found)

    await eventually(done)
    return found


async def replay(org: Org, connector_id: str, **body: Any) -> Any:
    return await org.api.post(f"/api/v1/connectors/{connector_id}/replay", json=body)


async def test_a_replayed_range_arrives_again_with_the_same_ids_and_new_attempts(
    org: Org, receiver: Receiver
) -> None:
    gw, con = await wired(org, receiver)
    before = await ingest(org, gw, "a1", "a2")
    inside = await ingest(org, gw, "b1", "b2", "b3")
    after = await ingest(org, gw, "c1")
    await receiver.wait_for(6)
    originals = await settled(org, 6)
    created = {d["messageId"]: d["createdAt"] for d in originals}
    assert created[before[0]] < created[inside[0]] < created[after[0]]

    resp = await replay(org, con["id"], since=created[inside[0]], until=created[after[0]])
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"replayed": 3}
    # The replay made its deliveries before it answered: the range's, nothing outside it.
    assert len(await org.deliveries()) == 9
    await receiver.wait_for(9)
    everything = await settled(org, 9)
    assert len(receiver.received) == 9
    assert sorted(receiver.ids()[6:]) == sorted(inside), "the same webhook-ids, once each"

    replays = [d for d in everything if d["replayOf"] is not None]
    by_id = {d["id"]: d for d in originals}
    assert sorted(by_id[d["replayOf"]]["messageId"] for d in replays) == sorted(inside)
    for d in replays:
        assert d["status"] == "delivered" and d["webhookId"] == d["messageId"]
        detail = (await org.api.get(f"/api/v1/deliveries/{d['id']}")).json()
        assert detail["replayOf"] == d["replayOf"]
        assert [a["statusCode"] for a in detail["attempts"]] == [204]
        # The original keeps its own history.
        original = (await org.api.get(f"/api/v1/deliveries/{d['replayOf']}")).json()
        assert len(original["attempts"]) == 1 and original["attempts"][0]["id"] != \
            detail["attempts"][0]["id"]
    # The message log shows both deliveries of a replayed message.
    log = (await org.api.get(f"/api/v1/messages/{inside[0]}")).json()
    assert len(log["deliveries"]) == 2


async def test_status_filter_and_dead_letters(org: Org) -> None:
    def respond(item: Received, _: int) -> web.Response:
        return web.Response(status=500 if b'"bad"' in item.body else 204)

    async with running_receiver(respond) as receiver:
        gw, con = await wired(org, receiver)
        since = rfc3339(int(time.time() * 1000) - 1)
        good = await ingest(org, gw, "good-1", "good-2")
        bad = await ingest(org, gw, "bad")
        originals = await settled(org, 3)
        assert Counter(d["status"] for d in originals) == {"delivered": 2, "failed": 1}
        await asyncio.sleep(0.01)  # deliberate interval: `until` is a later millisecond
        until = rfc3339(int(time.time() * 1000))

        # Dead letters: the deliveries that were given up on.
        dead = await org.deliveries(status="failed")
        assert [d["messageId"] for d in dead] == bad
        assert dead[0]["attemptCount"] == 4 and dead[0]["lastStatusCode"] == 500

        sent = len(receiver.received)
        resp = await replay(org, con["id"], since=since, until=until, status="failed")
        assert resp.json() == {"replayed": 1}, resp.text
        await receiver.wait_for(sent + 1)
        assert receiver.ids()[sent] == bad[0]

        resp = await replay(org, con["id"], since=since, until=until, status=["delivered"])
        assert resp.json() == {"replayed": 2}
        resp = await replay(org, con["id"], since=since, until=until, status=["pending", "held"])
        assert resp.json() == {"replayed": 0}
        # Without a status: delivered, failed and cancelled.
        resp = await replay(org, con["id"], since=since, until=until)
        assert resp.json() == {"replayed": 3}
        replays = [d for d in await org.deliveries() if d["replayOf"]]
        assert Counter(d["messageId"] for d in replays) == {bad[0]: 2, good[0]: 2, good[1]: 2}

        # The replayed failure fails again on its own and is a dead letter too.
        await settled(org, 9)
        assert len(await org.deliveries(status="failed")) == 3


async def test_replay_while_switched_off_is_held_and_cancelled_ones_never_leave(
    org: Org, receiver: Receiver
) -> None:
    gw, con = await wired(org, receiver)
    since = rfc3339(int(time.time() * 1000) - 1)
    ids = await ingest(org, gw, "d1", "d2")
    await receiver.wait_for(2)
    originals = await settled(org, 2)
    off = await org.api.patch(f"/api/v1/connectors/{con['id']}", json={"active": False})
    assert off.json()["active"] is False

    resp = await replay(org, con["id"], since=since)
    assert resp.status_code == 202 and resp.json() == {"replayed": 2}
    replays = [d for d in await org.deliveries() if d["replayOf"]]
    assert [d["status"] for d in replays] == ["held", "held"]
    keep, drop = replays

    cancelled = await org.api.post(f"/api/v1/deliveries/{drop['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["id"] == drop["id"]
    error_of(await org.api.post(f"/api/v1/deliveries/{drop['id']}/cancel"), 409,
             "not_cancellable", names=("cancelled",))
    error_of(await org.api.post(f"/api/v1/deliveries/{originals[0]['id']}/cancel"), 409,
             "not_cancellable", names=("delivered",))
    error_of(await org.api.post("/api/v1/deliveries/dlv_nope/cancel"), 404, "not_found")
    other = await org.service.new_org("Other")
    try:
        error_of(await other.api.post(f"/api/v1/deliveries/{keep['id']}/cancel"), 404)
        error_of(await replay(other, con["id"], since=since), 404, "not_found")
    finally:
        await other.api.aclose()

    # The held replays are not claimed: a few of the worker's 0.2 s polls pass.
    await asyncio.sleep(0.5)  # deliberate interval: the worker would have sent them by now
    assert len(receiver.received) == 2, "nothing leaves while the connector is off"
    on = await org.api.patch(f"/api/v1/connectors/{con['id']}", json={"active": True})
    assert on.json()["active"] is True
    await receiver.wait_for(3)
    await eventually(lambda: _status(org, keep["id"], "delivered"))
    # The cancelled one would have been claimed with the one just delivered, or a poll later.
    await asyncio.sleep(0.5)  # deliberate interval: a few of the worker's 0.2 s polls pass
    assert Counter(receiver.ids()) == {keep["messageId"]: 2, drop["messageId"]: 1}
    assert set(receiver.ids()) == set(ids)
    got = (await org.api.get(f"/api/v1/deliveries/{drop['id']}")).json()
    assert got["status"] == "cancelled" and got["attempts"] == []


async def _status(org: Org, delivery_id: str, status: str) -> bool:
    got = (await org.api.get(f"/api/v1/deliveries/{delivery_id}")).json()
    return bool(got["status"] == status)


# The retry is due 3 s after the first attempt: time enough to cancel it first.
@pytest.mark.parametrize("settings_overrides", [{"retry_schedule": (3.0,)}])
async def test_cancel_a_pending_delivery_stops_its_retries(org: Org) -> None:
    async with running_receiver(lambda _, __: web.Response(status=503)) as receiver:
        gw, _ = await wired(org, receiver)
        await ingest(org, gw, "d1")
        await receiver.wait_for(1)

        async def waiting_for_retry() -> bool:
            (d,) = await org.deliveries()
            return bool(d["status"] == "pending" and d["attemptCount"] == 1)

        await eventually(waiting_for_retry)
        (delivery,) = await org.deliveries()
        due = datetime.fromisoformat(delivery["nextAttemptAt"]).timestamp()
        resp = await org.api.post(f"/api/v1/deliveries/{delivery['id']}/cancel")
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
        assert time.time() < due, "cancelled only after the retry was due: nothing to check"
        # The retry's due time passes, and a few of the worker's 0.2 s polls.
        await asyncio.sleep(due + 1.0 - time.time())  # deliberate interval: retry delay
        assert len(receiver.received) == 1, "no retry after the cancel"
        assert (await org.deliveries())[0]["status"] == "cancelled"


async def test_bad_replay_requests_are_422_with_the_error_body(
    org: Org, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, con = await wired(org, receiver)
    await ingest(org, gw, "d1", "d2", "d3")
    await settled(org, 3)
    since = "2020-01-01T00:00:00Z"
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"since": 1700000000000}, "since"),
        ({"since": "a\u0000"}, "since"),
        ({"since": since, "until": "later"}, "until"),
        ({"since": since, "until": since}, "until"),
        ({"since": since, "until": "2019-01-01T00:00:00Z"}, "until"),
        ({"since": "9999-12-31T23:59:59-23:59"}, "since"),
        ({"since": since, "status": "lost"}, "status"),
        ({"since": since, "status": []}, "status"),
        ({"since": since, "status": ["failed", 3]}, "status"),
        ({"since": since, "status": {"failed": True}}, "status"),
        ({"since": since, "status": ["held\u0000"]}, "status"),
        ({"since": since, "extra": 1}, "extra"),
    ]
    for body, field in cases:
        err = error_of(await replay(org, con["id"], **body), 422, "validation_error")
        assert field in err["message"], (body, err)
    error_of(await org.api.post(f"/api/v1/connectors/{con['id']}/replay", content=b"[1]",
                                headers={"Content-Type": "application/json"}), 422)
    error_of(await replay(org, "con_nope", since=since), 404, "not_found")

    # More than one call may replay: refused whole, asking to narrow the range.
    monkeypatch.setattr(replay_api, "MAX_API_REPLAY", 2)
    err = error_of(await replay(org, con["id"], since=since), 422, "replay_too_large")
    assert "narrow" in err["message"]
    assert len(await org.deliveries()) == 3, "nothing was created"
    resp = await replay(org, con["id"], since=since, status="failed")
    assert resp.status_code == 202 and resp.json() == {"replayed": 0}


async def test_batches_cover_the_range_exactly_once(org: Org, receiver: Receiver) -> None:
    gw, con = await wired(org, receiver)
    since = int(time.time() * 1000) - 1
    await ingest(org, gw, *[f"d{i}" for i in range(7)])
    originals = await settled(org, 7)
    progress: list[int] = []
    totals: list[int] = []
    result = await replay_connector(
        org.service.runtime.db, org.id, con["id"], since_ms=since,
        batch_size=3, on_total=totals.append, on_progress=progress.append,
    )
    assert (result.replayed, result.held) == (7, 0)
    assert totals == [7] and progress == [3, 3, 1]
    replays = [d for d in await org.deliveries() if d["replayOf"]]
    assert sorted(d["replayOf"] for d in replays) == sorted(d["id"] for d in originals)
    await receiver.wait_for(14)


# --- hookstream replay ------------------------------------------------------------------

async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *hookstream_cmd(*args), env=settings_env(settings), cwd=settings.data_dir.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_replay_creates_the_deliveries_and_prints_a_summary(
    org: Org, receiver: Receiver, settings: Settings
) -> None:
    gw, con = await wired(org, receiver)
    since = rfc3339(int(time.time() * 1000) - 1)
    ids = await ingest(org, gw, "d1", "d2", "d3")
    await receiver.wait_for(3)
    await settled(org, 3)

    code, out, err = await cli(settings, "replay", "--org", org.id, "--connector", con["id"],
                               "--since", since, "--status", "delivered", "--status", "failed")
    assert code == 0, err
    assert f"replayed 3 deliveries of connector {con['id']}" in out
    assert "Traceback" not in err
    replays = [d for d in await org.deliveries() if d["replayOf"]]
    assert sorted(d["messageId"] for d in replays) == sorted(ids)
    await receiver.wait_for(6)
    assert Counter(receiver.ids()) == dict.fromkeys(ids, 2)

    # A range with nothing in it is not an error.
    code, out, _ = await cli(settings, "replay", "--org", org.id, "--connector", con["id"],
                             "--since", since, "--status", "pending")
    assert code == 0 and f"replayed 0 deliveries of connector {con['id']}" in out


async def test_cli_replay_refuses_an_unknown_connector_or_organization(
    org: Org, receiver: Receiver, settings: Settings
) -> None:
    _, con = await wired(org, receiver)
    since = ["--since", "2026-01-01T00:00:00Z"]
    cases = [
        (["--org", org.id, "--connector", "con_nope"], "no connector 'con_nope'"),
        (["--org", "org_nope", "--connector", con["id"]], "no organization 'org_nope'"),
    ]
    done = await asyncio.gather(*(cli(settings, "replay", *args, *since) for args, _ in cases))
    for (args, expected), (code, out, err) in zip(cases, done, strict=True):
        assert code == 2, (args, out, err)
        assert expected in err and "Traceback" not in err, (args, err)
        assert "replayed" not in out
    assert await org.deliveries() == []


async def test_cli_replay_refuses_bad_input_before_touching_the_database(
    tmp_path: Path,
) -> None:
    # No database at all: input is checked first.
    settings = base_settings(f"sqlite:///{tmp_path / 'none' / 'x.db'}", data_dir=tmp_path / "var")
    base = ["replay", "--org", "org_x", "--connector", "con_x"]
    cases: list[tuple[list[str], str]] = [
        ([*base, "--since", "yesterday"], "'--since' must be an RFC 3339 time"),
        ([*base, "--since", "2026-01-01T00:00:00"], "time zone"),
        ([*base, "--since", "2026-01-01T00:00:00Z", "--until", "2025-01-01T00:00:00Z"],
         "'until' must be later than 'since'"),
        ([*base, "--since", "9999-01-01T00:00:00Z"], "in the future"),
        ([*base, "--since", "2026-01-01T00:00:00Z", "--status", "lost"], "'--status' must be"),
        ([*base], "--since"),
    ]
    done = await asyncio.gather(*(cli(settings, *args) for args, _ in cases))
    for (args, expected), (code, out, err) in zip(cases, done, strict=True):
        assert code == 2, (args, out, err)
        assert expected in err, (args, err)
        assert "Traceback" not in err and "replayed" not in out
    assert not (tmp_path / "none").exists(), "no database was created"

    code, out, _ = await cli(settings, "replay", "--help")
    assert code == 0
    for option in ("--org", "--connector", "--since", "--until", "--status"):
        assert option in out
