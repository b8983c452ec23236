"""Fan-out and isolation: one message to many connectors, and one of them hanging.

Fan-out: a gateway whose values trigger 100 connectors, each to the fast receiver. The service
runs (on SQLite ``hookstream serve``, on PostgreSQL an ``api`` and a ``worker``), one message
has gone through (every process up and connected); then 200 messages are ingested in batches
of 100 from 2 clients and the clock runs from the first POST until the receiver has counted
the 20,000 deliveries. The reference, measured just before: the drain's bare aiohttp client
posting 20,000 bodies straight to the receiver.

Isolation: the same, with a 101st connector (created first) to a second receiver process that
reads every request and never answers. That connector keeps the defaults: the request timeout
(HOOKSTREAM_REQUEST_TIMEOUT, 15 s) and maxConcurrency (HOOKSTREAM_CONNECTOR_MAX_CONCURRENCY,
64), so up to 64 of the worker's 256 slots wait on it for the whole measurement. The figure is
the healthy connectors' deliveries/s; its reference is the fan-out run above (the same 100
healthy connectors alone, the same deliveries), so fan-out runs whenever isolation does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from bench.common import (
    KIND,
    CpuWindow,
    Databases,
    Figure,
    Options,
    Proc,
    Receiver,
    Target,
    Workspace,
    create_tenant_to,
    hookstream_api,
    message,
    say,
)
from bench.drain import reference
from bench.load import session
from bench.profile import profiled


async def _ingest(base: str, headers: dict[str, str], start: int, count: int, batch: int,
                  clients: int) -> dict[str, Any]:
    """``count`` messages (indexes from ``start``) in batches of ``batch``; every answer 202."""
    bodies = [orjson.dumps([message(i) for i in range(b, min(start + count, b + batch))])
              for b in range(start, start + count, batch)]
    queue = list(reversed(bodies))
    times: list[float] = []

    async def client(http: Any) -> None:
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            async with http.post(f"{base}/ingest/v1/{KIND}", data=body, headers=headers) as resp:
                text = await resp.text()
                if resp.status != 202:
                    raise RuntimeError(f"ingest: {resp.status} {text[:300]}")
            times.append(time.perf_counter() - t0)

    async with session(clients, timeout=300.0) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return {"requests": len(bodies), "responseMs": [round(t * 1000, 1) for t in times]}


async def _run(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options,
               hang: Receiver | None) -> dict[str, Any]:
    """One fan-out run on a fresh database; what it measured."""
    connectors, messages = options.fanout_connectors, options.fanout_messages
    expect = connectors * messages
    url = await dbs.new()
    sqlite = dbs.label == "SQLite"
    # A path per connector: the receiver tells the copies of one message apart by it.
    targets = [Target(receiver.url, values=f"/values/{c}") for c in range(connectors)]
    if hang is not None:
        targets.insert(0, Target(hang.url))
    async with hookstream_api(ws, "serve" if sqlite else "api", url) as (api, base):
        procs: list[Proc] = [api]
        try:
            tenant = await create_tenant_to(base, ws.admin_key, targets)
            if not sqlite:
                procs.append(ws.hookstream("worker", url))
            # One message through to every healthy connector: processes up, pools connected.
            await receiver.reset()
            await _ingest(base, tenant.ingest_headers, 10_000_000, 1, 1, 1)
            await receiver.wait_for(connectors, timeout=60)
            if hang is not None:
                await hang.reset()
            await receiver.reset()
            window = CpuWindow([*procs, receiver.proc])
            timeout = 60 + expect / 50

            def alive() -> None:
                for p in procs:
                    p.check()

            label = f"{'isolation' if hang else 'fanout'}-{dbs.label.lower()}"
            profile: dict[str, Any] = {}
            with profiled(ws, procs, label, options.profile, profile):
                started = time.time()
                ingest_task = asyncio.create_task(_ingest(
                    base, tenant.ingest_headers, 0, messages, options.ingest_batch, 2))
                stats = await receiver.wait_for(expect, timeout, also=alive)
                ingested = await ingest_task
                cpu = window.finish()
            hanging = await hang.stats() if hang is not None else None
            if hang is not None:
                # Its connections close at once: the worker's attempts to it end now, not
                # after the request timeout, and the service stops without waiting on them.
                ws.stop(hang.proc)
        finally:
            for proc in procs[1:]:
                ws.stop(proc)
    stats = await receiver.stats()
    last, first = float(stats["last"]), float(stats["first"])
    seconds = last - started
    details: dict[str, Any] = {
        "service": " + ".join(p.name for p in procs), "connectors": connectors,
        "messages": messages, "deliveries": expect, "ingest": ingested,
        "secondsIngestToLastDelivery": round(seconds, 3),
        "secondsToFirstDelivery": round(first - started, 3),
        "receiverRequests": stats["requests"], "duplicates": stats["requests"] - stats["unique"],
        "cpu": cpu, **profile,
    }
    if hanging is not None:
        details["hanging"] = {"requests": hanging["requests"],
                              "connectionsOpen": hanging["connections"],
                              "maxConnections": hanging["maxConnections"]}
    details["perSecond"] = expect / seconds
    return details


async def fanout(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options,
                 isolation: bool) -> list[Figure]:
    connectors, messages = options.fanout_connectors, options.fanout_messages
    expect = connectors * messages
    figures: list[Figure] = []
    say(f"fan-out ({dbs.label}): reference, {expect} requests straight to the receiver")
    ref, ref_details = await reference(receiver, options, expect)
    say(f"fan-out ({dbs.label}): {messages} messages to {connectors} connectors")
    alone = await _run(ws, dbs, receiver, options, None)
    alone["reference"] = ref_details
    rate = alone["perSecond"]
    say(f"fan-out ({dbs.label}): {rate:,.0f} deliveries/s, last delivery "
        f"{alone['secondsIngestToLastDelivery']:.2f} s after the first ingest; reference "
        f"{ref:,.0f} requests/s")
    figures.append(Figure(
        "fanout", f"fan-out, {messages} messages × {connectors} connectors", dbs.label, rate,
        "deliveries/s", ref, "aiohttp client → receiver, requests/s", details=alone,
        reference_unit="requests/s"))
    if not isolation:
        return figures
    hang = await Receiver.start(ws, name=f"hanging-receiver-{dbs.label.lower()}", hang=True)
    try:
        say(f"isolation ({dbs.label}): the same with a 101st connector that never answers")
        mixed = await _run(ws, dbs, receiver, options, hang)
    finally:
        ws.stop(hang.proc)
        await hang.close()
    mixed["reference"] = {k: alone[k] for k in ("secondsIngestToLastDelivery", "perSecond",
                                                "cpu")}
    say(f"isolation ({dbs.label}): healthy {mixed['perSecond']:,.0f} deliveries/s with a "
        f"hanging connector ({mixed['hanging']['maxConnections']} connections held), "
        f"{rate:,.0f} without")
    figures.append(Figure(
        "isolation", f"isolation, {connectors} healthy + 1 hanging", dbs.label,
        mixed["perSecond"], "deliveries/s", rate,
        f"the {connectors} healthy alone (fan-out), deliveries/s", details=mixed))
    return figures
