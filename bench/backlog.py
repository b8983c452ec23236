"""A large backlog: 200,000 pending deliveries (1,000,000 with --full) drained by one worker.

The backlog is ingested over HTTP by ``hookstream api`` (batches of 1000 from 4 concurrent
clients) while no worker runs; then one ``hookstream worker`` starts and the clock runs, as in
the drain, from its start until the receiver has counted every delivery. Its resident memory
(VmRSS) is sampled twice a second, and its peak (VmHWM) read before it stops.

The references are the 20,000-delivery drain of the same run on the same database (one
worker): its rate, and its worker's peak memory. If the drain did not run (``--only``), it
runs here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.common import (
    CpuWindow,
    Databases,
    Figure,
    Options,
    Receiver,
    Workspace,
    create_tenant,
    hookstream_api,
    rss_mb,
    say,
    wait_pending,
)
from bench.drain import drain, first_ready, ingest_backlog
from bench.profile import profiled


async def _sample_rss(pid: int, samples: list[tuple[float, float]], start: float) -> None:
    while True:
        rss = rss_mb(pid)["rss"]
        if rss is not None:
            samples.append((round(time.time() - start, 2), rss))
        await asyncio.sleep(0.5)


async def backlog(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options,
                  drained: Figure | None) -> list[Figure]:
    n = options.backlog
    if drained is None:
        say(f"backlog ({dbs.label}): the {options.deliveries:,}-delivery drain first, for "
            "the reference")
        drained = await drain(ws, dbs, receiver, options, 1)
    ref_rate = drained.value
    ref_peak = (drained.details.get("workerMemoryMB", {}).get("worker1") or {}).get("peak")

    url = await dbs.new()
    details: dict[str, Any] = {
        "deliveries": n, "workers": 1, "connectorMaxConcurrency": options.connector_limit(1),
        "reference": {"deliveries": drained.details.get("deliveries"), "perSecond": ref_rate,
                      "workerPeakMB": ref_peak},
    }
    async with hookstream_api(ws, "api", url) as (_api, base):
        tenant = await create_tenant(base, ws.admin_key, receiver.url,
                                     options.connector_limit(1))
        say(f"backlog ({dbs.label}): ingesting {n:,} messages in batches of "
            f"{options.backlog_batch} from {options.backlog_clients} clients")
        details["backlogIngest"] = await ingest_backlog(
            base, tenant.ingest_headers, options, n, options.backlog_clients)
    say(f"backlog ({dbs.label}): ingested at "
        f"{details['backlogIngest']['messagesPerSecond']:,.0f} messages/s")
    pending = await dbs.pending(url)
    if pending != n:
        raise RuntimeError(f"{pending} deliveries pending before the drain, expected {n}")

    await receiver.reset()
    say(f"backlog ({dbs.label}): one worker drains {n:,}")
    started = time.time()
    proc = ws.hookstream("worker", url, name="worker-backlog")
    window = CpuWindow([proc, receiver.proc])
    ready_task = asyncio.create_task(first_ready([proc]))
    samples: list[tuple[float, float]] = []
    sampler = asyncio.create_task(_sample_rss(proc.pid, samples, started))
    try:
        await receiver.wait_for(1, 60 + n / 50, also=proc.check)
        with profiled(ws, [proc], f"backlog-{dbs.label.lower()}", options.profile, details):
            stats = await receiver.wait_for(n, 60 + n / 50, also=proc.check)
        received_all = float(stats["last"])
        await wait_pending(dbs, url, 0, timeout=120)
        details["cpu"] = window.finish()
        memory = rss_mb(proc.pid)
        ready = await asyncio.wait_for(ready_task, 60)
    finally:
        ready_task.cancel()
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        ws.stop(proc)
    stats = await receiver.stats()
    first = float(stats["first"])
    rate = n / (received_all - ready)  # from readiness, as the drain it is compared with
    peak = memory["peak"]
    step = max(1, len(samples) // 200)
    details.update(
        perSecondFromStart=round(n / (received_all - started), 1),
        secondsToReady=round(ready - started, 3),
        secondsFromStart=round(received_all - started, 3),
        secondsToFirstWebhook=round(first - started, 3),
        steadyPerSecond=round((n - 1) / (received_all - first), 1) if received_all > first
        else None,
        receiverRequests=stats["requests"], duplicates=stats["requests"] - stats["unique"],
        workerMemoryMB=memory, rssSamplesMB=samples[::step],
    )
    small = f"{drained.details.get('deliveries', options.deliveries):,}"
    say(f"backlog ({dbs.label}): {rate:,.0f} deliveries/s (the {small} drain: "
        f"{ref_rate:,.0f}/s); worker peak RSS {peak} MB (drain's: {ref_peak} MB)")
    figures = [Figure(
        "backlog", f"backlog drain, {n:,} pending, 1 worker", dbs.label, rate, "deliveries/s",
        ref_rate, f"the {small}-delivery drain, deliveries/s", details=details)]
    if peak is not None:
        figures.append(Figure(
            "backlog", f"backlog worker peak RSS, {n:,} pending", dbs.label, peak, "MB",
            ref_peak or float("nan"), f"the {small}-delivery drain's worker, MB",
            higher_is_better=False, details={"see": "backlog drain row", "deliveries": n}))
    return figures
