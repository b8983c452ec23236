"""Latency from ingest to the receiver at a fixed offered load.

Single-message POSTs leave evenly paced (open loop: 1,000 msg/s for 10 s by default), each
carrying the time it was due to leave in ``payload``; the receiver notes ``arrival -
payload``. On SQLite the service is ``hookstream serve`` (its API and its worker process,
woken through a pipe); on PostgreSQL an ``api`` and a ``worker`` process (woken by NOTIFY). The
reference, measured just before: the same paced client POSTing straight to the receiver.

``sustained``: the highest offered rate at which ``serve`` keeps ingest-to-receiver p99 within
``SUSTAINED_P99_MS`` (and accepts what is offered), against the drain's bare aiohttp client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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
    percentiles,
    say,
)
from bench.load import post_paced, session
from bench.profile import profiled


def _request(headers: Callable[[int], dict[str, str]]) -> Callable[
        [int, float], tuple[bytes, dict[str, str]]]:
    def request(i: int, due: float) -> tuple[bytes, dict[str, str]]:
        return orjson.dumps(message(i, payload=due)), headers(i)

    return request


async def _paced(receiver: Receiver, url: str, headers: Callable[[int], dict[str, str]],
                 expect: int, rate: float, options: Options, procs: list[Proc]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the paced load; (percentiles of arrival - due, details)."""
    await receiver.reset(latency=True)
    window = CpuWindow([*procs, receiver.proc])
    # An overloaded service queues requests in the client's pool: give them time.
    async with session(options.concurrency, timeout=900.0) as http:
        result = await post_paced(http, url, rate, options.latency_seconds,
                                  _request(headers), expect)
    accepted = result.items
    await receiver.wait_for(accepted, timeout=60 + accepted / 100)
    cpu = window.finish()
    samples = await receiver.samples()
    stats = await receiver.stats()
    details = {
        "offeredPerSecond": rate, "seconds": options.latency_seconds,
        "acceptedPerSecond": round(accepted / result.seconds, 1) if result.seconds else None,
        "accepted": accepted, "received": stats["requests"],
        "duplicates": stats["requests"] - stats["unique"], "samples": len(samples),
        "client": result.summary(), "cpu": cpu,
    }
    if result.errors:
        raise RuntimeError(f"latency load against {url}: {result.statuses}")
    return percentiles(samples), details


async def _warm_up(receiver: Receiver, base: str, headers: dict[str, str]) -> None:
    """One message through, so that every process is up and connected before the clock."""
    await receiver.reset()
    async with session(1) as http:
        async with http.post(f"{base}/ingest/v1/{KIND}", data=orjson.dumps(message(0)),
                             headers=headers) as resp:
            if resp.status != 202:
                raise RuntimeError(f"warm-up ingest: {resp.status} {await resp.text()}")
    await receiver.wait_for(1, timeout=30)


async def latency(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options
                  ) -> list[Figure]:
    figures: list[Figure] = []
    for rate in options.latency_rates:
        figures.extend(await _latency(ws, dbs, receiver, options, rate))
    return figures


SUSTAINED_P99_MS = 100.0


async def sustained(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options
                    ) -> list[Figure]:
    """The sustained rate of ``serve``: offered rates in turn, until p99 passes the bound."""
    from bench.drain import reference

    say(f"sustained ({dbs.label}): reference, the bare aiohttp client")
    ref_rate, ref_details = await reference(receiver, options)
    url = await dbs.new()
    paced = replace(options, latency_seconds=options.sustained_seconds)
    tried: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] | None = None
    async with hookstream_api(ws, "serve", url) as (api, base):
        tenant = await create_tenant(base, ws.admin_key, receiver.url,
                                     options.connector_limit())
        await _warm_up(receiver, base, tenant.ingest_headers)
        for rate in options.sustained_rates:
            say(f"sustained ({dbs.label}): {rate:,.0f} msg/s for {paced.latency_seconds:g} s")
            measured, more = await _paced(
                receiver, f"{base}/ingest/v1/{KIND}", lambda i: tenant.ingest_headers, 202,
                rate, paced, [api],
            )
            accepted = more.get("acceptedPerSecond") or 0.0
            held = (measured["p99"] is not None and measured["p99"] <= SUSTAINED_P99_MS
                    and accepted >= 0.95 * rate)
            tried.append({"offered": rate, "accepted": accepted, "p50": measured["p50"],
                          "p99": measured["p99"], "held": held, "cpu": more.get("cpu")})
            if not held:
                break
            best = (rate, measured)
    rate_held = best[0] if best else 0.0
    p50 = best[1]["p50"] if best else None
    say(f"sustained ({dbs.label}): {rate_held:,.0f} msg/s held (p50 {p50} ms)")
    return [Figure(
        "sustained", f"sustained rate of serve, p99 ≤{SUSTAINED_P99_MS:g} ms", dbs.label,
        rate_held, "msg/s", ref_rate, "bare aiohttp client → receiver, requests/s",
        details={"p50Ms": p50, "tried": tried, "reference": ref_details,
                 "seconds": paced.latency_seconds},
    )]


async def _latency(ws: Workspace, dbs: Databases, receiver: Receiver, options: Options,
                   rate: float) -> list[Figure]:
    seconds = options.latency_seconds
    say(f"latency ({dbs.label}): reference, {rate:,.0f} requests/s for {seconds:g} s "
        "straight to the receiver")
    ref, ref_details = await _paced(receiver, receiver.url + "/values", fake_webhook_headers,
                                    204, rate, options, [])
    url = await dbs.new()
    sqlite = dbs.label == "SQLite"
    role = "serve" if sqlite else "api"
    async with hookstream_api(ws, role, url) as (api, base):
        tenant = await create_tenant(base, ws.admin_key, receiver.url,
                                     options.connector_limit())
        procs = [api]
        if not sqlite:
            procs.append(ws.hookstream("worker", url))
        details: dict[str, Any] = {"service": " + ".join(p.name for p in procs),
                                   "reference": ref_details}
        try:
            await _warm_up(receiver, base, tenant.ingest_headers)
            say(f"latency ({dbs.label}): {rate:,.0f} msg/s for {seconds:g} s through "
                f"{details['service']}")
            label = f"latency-{dbs.label.lower()}-{rate:g}"
            with profiled(ws, procs, label, options.profile, details):
                measured, more = await _paced(
                    receiver, f"{base}/ingest/v1/{KIND}", lambda i: tenant.ingest_headers,
                    202, rate, options, procs,
                )
        finally:
            for proc in procs[1:]:
                ws.stop(proc)
    details.update(more)
    details["percentilesMs"] = measured
    details["referencePercentilesMs"] = ref
    say(f"latency ({dbs.label}): p50 {measured['p50']} ms, p95 {measured['p95']} ms, "
        f"p99 {measured['p99']} ms (reference p50 {ref['p50']} ms)")
    figures = []
    for q in ("p50", "p95", "p99"):
        figures.append(Figure(
            "latency", f"latency {q}, {rate:,.0f} msg/s × {seconds:g} s", dbs.label,
            float(measured[q] or 0.0), "ms", float(ref[q] or 0.0),
            "paced client → receiver, ms", higher_is_better=False,
            details=details if q == "p50" else {"see": "p50 row"},
        ))
    return figures
