"""Retention: old messages go with their deliveries and attempts, in small batches, never
while something is still to be delivered (real service and receivers, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from sqlalchemy import text

from hookstream.ids import first_id_at, new_id
from hookstream.pipeline.record.retention import Purger
from hookstream.settings import Settings
from hookstream.storage.repository import Repository
from tests.api_checks import message
from tests.support import (
    Org,
    Received,
    Receiver,
    Service,
    eventually,
    hookstream_cmd,
    running_receiver,
    running_service,
    settings_env,
    spawn,
    wait_ready,
)


def purger_at(svc: Service, boundary: float, **kwargs: Any) -> Purger:
    """A purger whose retention (and Idempotency-Key window) ends at ``boundary`` (epoch s):
    the service's own settings, with the age set to the time since then."""
    age = time.time() - boundary
    settings = svc.settings.model_copy(
        update={"retention_seconds": age, "idempotency_window_seconds": age}
    )
    return Purger(svc.runtime.db, settings, **kwargs)


async def failing(_: Received, __: int) -> web.Response:
    return web.Response(status=500, text="down")


async def get(org: Org, path: str) -> httpx.Response:
    return await org.api.get(f"/api/v1/{path}")


async def ingest(org: Org, gw: dict[str, Any], body: Any, key: str | None = None) -> list[str]:
    headers = {"Authorization": f"Bearer {gw['ingestToken']}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    resp = await org.service.client.post(
        "/ingest/v1/values", content=orjson.dumps(body), headers=headers
    )
    assert resp.status_code == 202, resp.text
    return list(resp.json()["ids"])


async def deliveries_of(org: Org, message_id: str) -> dict[str, dict[str, Any]]:
    """The message's deliveries by connector id, each with its attempts."""
    resp = await get(org, f"messages/{message_id}")
    assert resp.status_code == 200, resp.text
    out = {}
    for d in resp.json()["deliveries"]:
        detail = await get(org, f"deliveries/{d['id']}")
        assert detail.status_code == 200, detail.text
        out[d["connectorId"]] = detail.json()
    return out


async def statuses(org: Org, message_ids: list[str]) -> list[str]:
    found = []
    for mid in message_ids:
        resp = await get(org, f"messages/{mid}")
        if resp.status_code == 200:
            found += [d["status"] for d in resp.json()["deliveries"]]
    return sorted(found)


def test_message_ids_sort_by_their_millisecond() -> None:
    # The purge finds old messages by id: every id made at or after a millisecond is at
    # least first_id_at(that millisecond), and every earlier one is below it.
    before = int(time.time() * 1000)
    made = [new_id("msg") for _ in range(500)]
    after = int(time.time() * 1000)
    for mid in made:
        assert first_id_at("msg", before) <= mid < first_id_at("msg", after + 1)
    assert first_id_at("msg", before - 1) < first_id_at("msg", before)
    assert first_id_at("msg", 0) == "msg_" + "0" * 26


async def test_old_finished_messages_go_with_their_history_open_ones_and_recent_ones_stay(
    org: Org, receiver: Receiver
) -> None:
    async with running_receiver(failing) as down:
        ok = await org.connector(receiver.url)
        # Never answers 2xx: a first attempt, then the next one in an hour (pending).
        pending = await org.connector(down.url, retry={"schedule": [3600]})
        held = await org.connector(down.url, retry={"schedule": [3600]})
        gave_up = await org.connector(down.url, retry={"maxAttempts": 1})
        gw_done, gw_open, gw_held, gw_failed, gw_none = [
            await org.gateway(n) for n in ("done", "open", "held", "failed", "none")
        ]
        await org.trigger(ok["id"], ["values"], [gw_done["id"], gw_open["id"]])
        await org.trigger(pending["id"], ["values"], [gw_open["id"]])
        await org.trigger(held["id"], ["values"], [gw_held["id"]])
        await org.trigger(gave_up["id"], ["values"], [gw_failed["id"]])

        done = await ingest(org, gw_done, [message(f"d{i}") for i in range(3)])
        (still_open,) = await ingest(org, gw_open, message("o"))
        (on_hold,) = await ingest(org, gw_held, message("h"))
        (failed,) = await ingest(org, gw_failed, message("f"))
        (lonely,) = await ingest(org, gw_none, message("n"), key="old-key")

        async def settled() -> bool:
            return await statuses(org, [*done, still_open, on_hold, failed]) == sorted(
                ["delivered"] * 4 + ["failed"] + ["pending"] * 2
            ) and all(d["attemptCount"] == 1 for d in await org.deliveries())

        await eventually(settled)
        # Switched off after its first attempt: its delivery is held.
        resp = await org.api.patch(f"/api/v1/connectors/{held['id']}", json={"active": False})
        assert resp.status_code == 200, resp.text
        assert (await deliveries_of(org, on_hold))[held["id"]]["status"] == "held"

        # Everything so far is "old"; what comes next is "recent".
        boundary = time.time()
        await asyncio.sleep(0.05)  # deliberate interval: what follows is 50 ms after `boundary`
        recent = await ingest(org, gw_done, message("r"), key="new-key")
        recent += await ingest(org, gw_none, message("r"))
        await receiver.wait_for(5)

        async def recent_delivered() -> bool:
            return await statuses(org, recent) == ["delivered"]

        await eventually(recent_delivered)

        counts = await purger_at(org.service, boundary).purge_once()

        # What was finished and old is gone: messages, their deliveries and attempts.
        assert counts == {"attempts": 4, "deliveries": 4, "messages": 5, "idempotency_keys": 1,
                          "oauth_codes": 0, "oauth_tokens": 0, "console_sessions": 0,
                          "attempt_counts": 0}
        gone_deliveries = [
            d for d in await org.deliveries() if d["messageId"] in (*done, failed)
        ]
        assert gone_deliveries == []
        for mid in (*done, failed, lonely):
            assert (await get(org, f"messages/{mid}")).status_code == 404, mid
        # A message with an open delivery stays whole, its delivered sibling included.
        kept = await deliveries_of(org, still_open)
        assert kept[pending["id"]]["status"] == "pending"
        assert kept[ok["id"]]["status"] == "delivered"
        assert [len(d["attempts"]) for d in kept.values()] == [1, 1]
        kept = await deliveries_of(org, on_hold)
        assert kept[held["id"]]["status"] == "held" and len(kept[held["id"]]["attempts"]) == 1
        # Recent messages stay, finished or not.
        for mid in recent:
            assert (await get(org, f"messages/{mid}")).status_code == 200
        assert len((await deliveries_of(org, recent[0]))[ok["id"]]["attempts"]) == 1

        # Nothing more is due; once the open deliveries are cancelled, their messages go.
        again = await purger_at(org.service, boundary).purge_once()
        assert again == dict.fromkeys(counts, 0)
        for mid in (still_open, on_hold):
            for d in (await deliveries_of(org, mid)).values():
                if d["status"] in ("pending", "held"):
                    resp = await org.api.post(f"/api/v1/deliveries/{d['id']}/cancel")
                    assert resp.status_code == 200, resp.text
        counts = await purger_at(org.service, boundary).purge_once()
        assert counts == {"attempts": 3, "deliveries": 3, "messages": 2, "idempotency_keys": 0,
                          "oauth_codes": 0, "oauth_tokens": 0, "console_sessions": 0,
                          "attempt_counts": 0}
        left = (await get(org, "messages?limit=100")).json()["items"]
        assert sorted(m["id"] for m in left) == sorted(recent)
        assert sorted(d["messageId"] for d in await org.deliveries()) == [recent[0]]


@pytest.mark.parametrize("settings_overrides", [{"retention_batch": 1000}])
async def test_the_purge_works_in_batches_of_the_set_size(
    org: Org, receiver: Receiver
) -> None:
    gw_routed, gw_alone = await org.gateway("routed"), await org.gateway("alone")
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], ["values"], [gw_routed["id"]])
    old: list[str] = []
    for gw, count in ((gw_routed, 1200), (gw_alone, 1300)):
        for start in range(0, count, 1000):
            old += await ingest(org, gw, [
                message(f"d{i}", ts=1_700_000_000_000 + i)
                for i in range(start, min(count, start + 1000))
            ])
    await receiver.wait_for(1200, timeout=60)

    async def all_delivered() -> bool:
        dels = await org.deliveries()
        return len(dels) == 1200 and {d["status"] for d in dels} == {"delivered"}

    await eventually(all_delivered)
    boundary = time.time()
    await asyncio.sleep(0.05)  # deliberate interval: what follows is 50 ms after `boundary`

    batches: list[tuple[str, int]] = []
    purger = purger_at(org.service, boundary,
                       on_batch=lambda table, rows: batches.append((table, rows)))
    # Ingest goes on while the purge runs.
    counts, *during = await asyncio.gather(
        purger.purge_once(), *(ingest(org, gw_alone, message("new")) for _ in range(5))
    )
    assert batches == [
        ("attempts", 1000), ("attempts", 200),
        ("deliveries", 1000), ("deliveries", 200),
        ("messages", 1000), ("messages", 1000), ("messages", 500),
    ]
    assert counts == {"attempts": 1200, "deliveries": 1200, "messages": 2500,
                      "idempotency_keys": 0, "oauth_codes": 0, "oauth_tokens": 0,
                      "console_sessions": 0, "attempt_counts": 0}
    left = (await get(org, "messages?limit=1000")).json()["items"]
    assert sorted(m["id"] for m in left) == sorted(i for new in during for i in new)
    assert await org.deliveries() == []
    assert (await get(org, f"messages/{old[0]}")).status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"retention_seconds": 0.3,
                                                 "retention_interval": 0.1}])
async def test_the_purger_keeps_running_through_database_errors(
    service: Service, org: Org, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hookstream.pipeline.record.retention")
    gw = await org.gateway()
    db = service.runtime.db
    async with db.write() as conn:  # a broken database: a table is missing
        await conn.execute(text("ALTER TABLE attempts RENAME TO attempts_away"))
    (mid,) = await ingest(org, gw, message())
    task = asyncio.create_task(Purger(db, settings).run())
    try:
        async def failed_twice() -> bool:
            return sum("purging failed" in r.getMessage() for r in caplog.records) >= 2

        await eventually(failed_twice, timeout=30)
        assert not task.done()
        assert (await get(org, f"messages/{mid}")).status_code == 200
        async with db.write() as conn:
            await conn.execute(text("ALTER TABLE attempts_away RENAME TO attempts"))

        async def purged() -> bool:
            return (await get(org, f"messages/{mid}")).status_code == 404

        await eventually(purged, timeout=30)

        # Each round that purged something says how much (once the round is over).
        async def said() -> bool:
            return any("purged" in r.getMessage() and "1 messages" in r.getMessage()
                       for r in caplog.records)

        await eventually(said, timeout=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


@pytest.mark.slow
@pytest.mark.parametrize("settings_overrides", [{"retention_seconds": 0.5}])
async def test_a_worker_process_purges(settings: Settings, tmp_path: Path) -> None:
    env = settings_env(settings, HOOKSTREAM_RETENTION_SECONDS="0.5",
                       HOOKSTREAM_RETENTION_INTERVAL="0.2")
    log = tmp_path / "worker.log"
    async with running_service(settings, worker=False) as svc:
        org = await svc.new_org()
        try:
            gw = await org.gateway()
            (mid,) = await ingest(org, gw, message())
            proc = spawn(hookstream_cmd("worker"), env, log)
            try:
                await wait_ready(proc, log, what="hookstream worker")

                async def purged() -> bool:
                    return (await get(org, f"messages/{mid}")).status_code == 404

                await eventually(purged, timeout=30, what="the worker purged the message")
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(proc.wait, 60)
            assert code == 0, log.read_text()[-3000:]
        finally:
            await org.api.aclose()



async def test_expired_oauth_codes_and_tokens_are_purged(org: Org) -> None:
    now = int(time.time() * 1000)
    hour = 3_600_000
    async with org.service.runtime.db.write() as conn:
        repo = Repository(conn)
        for name, access_at, refresh_at in (
            ("gone", now - hour, now - 1), ("refreshable", now - hour, now + hour),
            ("live", now + hour, None), ("expired-no-refresh", now - 1, None),
        ):
            await repo.insert_oauth_token(
                id=new_id("tok"), family_id=name, access_hash=f"a-{name}",
                refresh_hash=None if refresh_at is None else f"r-{name}", client_id="cli_x",
                user_id="usr_x", org_id=org.id, scope="comfort.read", created_at=now - hour,
                access_expires_at=access_at, refresh_expires_at=refresh_at,
            )
        for name, expires_at in (("old", now - 1), ("new", now + hour)):
            await repo.insert_oauth_code(
                code_hash=name, client_id="cli_x", user_id="usr_x", org_id=org.id,
                redirect_uri="https://a.example/cb", scope="comfort.read", created_at=now,
                expires_at=expires_at,
            )
    counts = await Purger(org.service.runtime.db, org.service.settings).purge_once()
    assert (counts["oauth_tokens"], counts["oauth_codes"]) == (2, 1)
    async with org.service.runtime.db.read() as conn:
        repo = Repository(conn)
        assert await repo.oauth_token_by_access_hash("a-refreshable") is not None
        assert await repo.oauth_token_by_access_hash("a-live") is not None
        assert await repo.oauth_token_by_access_hash("a-gone") is None
        assert await repo.oauth_code_by_hash("new") is not None
        assert await repo.oauth_code_by_hash("old") is None
