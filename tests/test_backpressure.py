"""Backpressure and isolation: per-connector limits across workers, and a hanging endpoint
that cannot hold up the others."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hookstream.settings import Settings
from tests.support import (
    Org,
    Received,
    eventually,
    hookstream_cmd,
    running_receiver,
    running_service,
    settings_env,
    spawn,
    wait_ready,
)


def value(i: int) -> dict[str, Any]:
    return {"deviceId": f"d{i % 5}", "property": "p", "timestamp": 1_700_000_000_000 + i,
            "payload": i}


class Gauge:
    """Counts requests open at once at a receiver."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.open = 0
        self.peak = 0

    async def respond(self, _: Received, __: int) -> web.Response:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await asyncio.sleep(self.hold)  # pacing: each request stays open this long
        finally:
            self.open -= 1
        return web.Response(status=204)


async def test_a_hanging_endpoint_does_not_hold_up_ten_healthy_ones(org: Org) -> None:
    hung = Gauge(hold=3600)
    async with running_receiver(hung.respond) as stuck, contextlib.AsyncExitStack() as stack:
        gw = await org.gateway()
        bad = await org.connector(stuck.url, timeouts={"total": 60},
                                  limits={"maxConcurrency": 8})
        await org.trigger(bad["id"], ["values"], [gw["id"]])
        healthy = []
        for _ in range(10):
            rec = await stack.enter_async_context(running_receiver())
            healthy.append(rec)
            con = await org.connector(rec.url)
            await org.trigger(con["id"], ["values"], [gw["id"]])
        # The stuck connector's deliveries are first in line.
        for start in (0, 50):
            resp = await org.ingest(gw["ingestToken"], "values",
                                    [value(i) for i in range(start, start + 50)])
            assert resp.status_code == 202
        started = time.monotonic()
        for rec in healthy:
            await rec.wait_for(100, timeout=60)
        elapsed = time.monotonic() - started
        print(f"\n1000 deliveries to 10 healthy connectors in {elapsed:.2f} s while "
              f"{hung.open} requests hang at the 11th")
        assert hung.open == 8, "the stuck connector holds exactly its allowed connections"
        assert hung.peak == 8
        assert sum(len(r.received) for r in healthy) == 1000


async def test_max_concurrency_caps_requests_in_flight(org: Org) -> None:
    gauge = Gauge(hold=0.1)
    async with running_receiver(gauge.respond) as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url, limits={"maxConcurrency": 3})
        assert con["limits"] == {"maxConcurrency": 3, "perSecond": None}
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(30)])
        await rec.wait_for(30, timeout=30)
        assert gauge.peak == 3


async def test_requests_per_second_are_limited(org: Org) -> None:
    async with running_receiver() as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url, limits={"perSecond": 5})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(15)])
        await rec.wait_for(15, timeout=30)
        times = sorted(r.at for r in rec.received)
        # A full bucket of 5 at once, then 5 per second: the last 10 need 2 s.
        assert times[-1] - times[0] >= 1.7
        for i, t in enumerate(times):
            in_window = sum(1 for u in times[i:] if u - t < 1.0)
            assert in_window <= 10


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [{"poll_interval": 0.05}])
async def test_limits_hold_across_two_worker_processes(settings: Settings, tmp_path: Path) -> None:
    gauge = Gauge(hold=0.1)
    async with running_service(settings, worker=False) as svc, \
            running_receiver(gauge.respond) as rec:
        org = await svc.new_org()
        gw = await org.gateway()
        con = await org.connector(rec.url, limits={"maxConcurrency": 4})
        await org.trigger(con["id"], ["values"], [gw["id"]])
        logs = [tmp_path / f"w{n}.log" for n in range(2)]
        workers = [spawn(hookstream_cmd("worker"), settings_env(settings), log) for log in logs]
        try:
            for w, log in zip(workers, logs, strict=True):
                await wait_ready(w, log, what="hookstream worker")
            await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(60)])
            await rec.wait_for(60, timeout=60)

            async def delivered() -> bool:
                return {d["status"] for d in await org.deliveries()} == {"delivered"}

            await eventually(delivered)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            codes = [w.wait(60) for w in workers]
            await org.api.aclose()
        assert codes == [0, 0]
        assert gauge.peak == 4, f"peak {gauge.peak} requests in flight with a limit of 4"
