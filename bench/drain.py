"""Drain: a backlog of N pending deliveries, sent by ``hookstream worker`` processes.

The backlog is ingested over HTTP (batches of 1000) while no worker runs; then the workers
start and the clock runs from their start until the receiver has counted N requests (the
database must then show none pending). The reference, measured just before on the same
receiver: a bare aiohttp client (one pool of 256 connections, 256 tasks) POSTing N bodies of
the same size with headers of the same size.
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
    Workspace,
    create_tenant,
    fake_webhook_headers,
    hookstream_api,
    message,
    rss_mb,
    say,
    wait_pending,
)
from bench.load import post_count, session
from bench.profile import profiled


async def reference(receiver: Receiver, options: Options, n: int | None = None
                    ) -> tuple[float, dict[str, Any]]:
    """Requests/s of a bare aiohttp client posting ``n`` (default: the backlog's size) bodies
    of the backlog's kind to the receiver."""
    n = options.deliveries if n is None else n
    bodies = [orjson.dumps(message(i)) for i in range(min(n, 1000))]
    await receiver.reset()

    def request(i: int) -> tuple[bytes, dict[str, str]]:
        return bodies[i % len(bodies)], fake_webhook_headers(i)

    window = CpuWindow([receiver.proc])
    async with session(options.concurrency) as http:
        result = await post_count(http, receiver.url + "/values", n, options.concurrency,
                                  request, expect=204)
    cpu = window.finish()
    stats = await receiver.stats()
    if result.errors or stats["requests"] != n:
        raise RuntimeError(f"reference: {result.errors} errors, receiver counted "
                           f"{stats['requests']} of {n}")
    return result.items_per_second, {**result.summary(), "cpu": cpu}


async def ingest_backlog(base: str, tenant_headers: dict[str, str], options: Options,
                         n: int | None = None, clients: int = 2) -> dict[str, Any]:
    """``n`` messages (default: the drain's backlog) in batches of ``options.backlog_batch``
    from ``clients`` concurrent clients."""
    n = options.deliveries if n is None else n
    size = options.backlog_batch
    batches = (n + size - 1) // size

    def request(b: int) -> tuple[bytes, dict[str, str]]:
        items = [message(i) for i in range(b * size, min(n, (b + 1) * size))]
        return orjson.dumps(items), tenant_headers

    async with session(max(4, clients)) as http:
        result = await post_count(http, f"{base}/ingest/v1/{KIND}", batches, clients, request,
                                  expect=202, items_per_request=size)
    if result.errors:
        raise RuntimeError(f"backlog ingest: {result.statuses}")
    return {"messagesPerSecond": round(n / result.seconds, 1), **result.summary()}


READY = "hookstream ready:"


async def first_ready(procs: list[Proc]) -> float:
    """When the first of ``procs`` logged its readiness line (after its first claim), polled."""
    while True:
        for p in procs:
            p.check()
            if READY in p.output():
                return time.time()
        await asyncio.sleep(0.005)


async def drain(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options,
                workers: int) -> Figure:
    n = options.deliveries
    label = f"{dbs.label} {workers} worker{'s' if workers > 1 else ''}"
    say(f"drain {label}: reference, {n} requests straight to the receiver")
    ref, ref_details = await reference(receiver, options)
    say(f"drain {label}: reference {ref:,.0f} requests/s")

    url = await dbs.new()
    details: dict[str, Any] = {"deliveries": n, "workers": workers,
                               "connectorMaxConcurrency": options.connector_limit(workers),
                               "reference": ref_details}
    async with hookstream_api(ws, "api", url) as (_api, base):
        tenant = await create_tenant(base, ws.admin_key, receiver.url,
                                     options.connector_limit(workers))
        say(f"drain {label}: ingesting a backlog of {n} in batches of {options.backlog_batch}")
        details["backlogIngest"] = await ingest_backlog(base, tenant.ingest_headers, options)
    pending = await dbs.pending(url)
    if pending != n:
        raise RuntimeError(f"{pending} deliveries pending before the drain, expected {n}")

    await receiver.reset()
    say(f"drain {label}: starting {workers} worker process(es)")
    started = time.time()
    procs = [ws.hookstream("worker", url, name=f"worker{k + 1}") for k in range(workers)]
    window = CpuWindow([*procs, receiver.proc])
    timeout = 60 + n / 50
    ready_task = asyncio.create_task(first_ready(procs))

    def alive() -> None:
        for p in procs:
            p.check()

    try:
        await receiver.wait_for(1, timeout, also=alive)
        # The profile covers the drain itself, not the process start.
        with profiled(ws, procs, f"drain-{dbs.label.lower()}-{workers}w", options.profile,
                      details):
            stats = await receiver.wait_for(n, timeout, also=alive)
            received_all = float(stats["last"])
            recorded_all = await wait_pending(dbs, url, 0, timeout=60)
        details["cpu"] = window.finish()
        details["workerMemoryMB"] = {p.name: rss_mb(p.pid) for p in procs}
        ready = await asyncio.wait_for(ready_task, timeout)
    finally:
        ready_task.cancel()
        for proc in procs:
            ws.stop(proc)
    stats = await receiver.stats()
    first = float(stats["first"])
    # Like the reference (timed from its first request, its interpreter started and its
    # session open), the figure is timed from the worker's readiness; its start is beside it.
    rate = n / (received_all - ready)
    details.update(
        perSecondFromStart=round(n / (received_all - started), 1),
        secondsToReady=round(ready - started, 3),
        secondsFromStart=round(received_all - started, 3),
        secondsToFirstWebhook=round(first - started, 3),
        steadyPerSecond=round((n - 1) / (received_all - first), 1) if received_all > first
        else None,
        secondsUntilNonePending=round(recorded_all - started, 3),
        receiverRequests=stats["requests"], receiverUnique=stats["unique"],
        duplicates=stats["requests"] - stats["unique"],
    )
    say(f"drain {label}: {rate:,.0f} deliveries/s from the worker's readiness at "
        f"{details['secondsToReady']:.2f} s ({details['perSecondFromStart']:,.0f}/s from its "
        f"start), reference {ref:,.0f} requests/s")
    return Figure("drain", f"drain, {workers} worker{'s' if workers > 1 else ''}", dbs.label,
                  rate, "deliveries/s", ref, "aiohttp client → receiver, requests/s",
                  details=details, reference_unit="requests/s")
