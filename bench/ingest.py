"""Ingest over HTTP: messages/s answered 202 by ``hookstream api``.

Two shapes: single-message POSTs from 64 concurrent clients, and batches of 100 from 16. Each
runs for a warm-up second and then a measured span, against a fresh database; no worker runs,
so deliveries pile up as they would behind a slow endpoint. The reference, measured just
before with the same client and bodies: bench/refapp.py, the same FastAPI-on-uvicorn stack
that parses the JSON and answers 202 with nothing behind it.
"""

from __future__ import annotations

from collections.abc import Callable
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
    free_port,
    hookstream_api,
    message,
    say,
    wait_http,
)
from bench.load import post_for, session
from bench.profile import profiled


class Reference:
    """bench/refapp.py in its own process."""

    def __init__(self, proc: Proc, base: str) -> None:
        self.proc = proc
        self.base = base

    @classmethod
    async def start(cls, ws: Workspace) -> Reference:
        port = free_port()
        proc = ws.python("refapp", "bench.refapp", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        await wait_http(proc, base + "/readyz")
        return cls(proc, base)


def _requests(batch: int, headers: dict[str, str]) -> Callable[[int], tuple[bytes, dict[str,
                                                                                         str]]]:
    if batch == 1:
        bodies = [orjson.dumps(message(i)) for i in range(1000)]
    else:
        bodies = [orjson.dumps([message(i * batch + j) for j in range(batch)])
                  for i in range(50)]

    def request(i: int) -> tuple[bytes, dict[str, str]]:
        return bodies[i % len(bodies)], headers

    return request


async def _load(base: str, headers: dict[str, str], batch: int, clients: int,
                options: Options, procs: list[Proc]) -> tuple[float, dict[str, Any]]:
    window = CpuWindow(procs)
    async with session(clients) as http:
        result = await post_for(
            http, f"{base}/ingest/v1/{KIND}", options.ingest_seconds, options.ingest_warmup,
            clients, _requests(batch, headers), expect=202, items_per_request=batch,
        )
    details = {**result.summary(), "cpu": window.finish()}
    if result.errors:
        raise RuntimeError(f"ingest against {base}: {result.statuses}")
    return result.items_per_second, details


async def ingest(ws: Workspace, dbs: Databases, receiver: Receiver, reference: Reference,
                 options: Options) -> list[Figure]:
    figures: list[Figure] = []
    shapes = ((1, options.ingest_clients), (options.ingest_batch, options.ingest_batch_clients))
    # One API process, then HOOKSTREAM_API_PROCESSES=2 (one listening socket shared).
    for processes in (1, 2):
        url = await dbs.new()
        env = {"HOOKSTREAM_API_PROCESSES": str(processes)}
        async with hookstream_api(ws, "api", url, env=env) as (api, base):
            tenant = await create_tenant(base, ws.admin_key, receiver.url,
                                         options.connector_limit())
            for batch, clients in shapes:
                what = "single messages" if batch == 1 else f"batches of {batch}"
                name = f"ingest, {what}, {clients} clients"
                if processes > 1:
                    name += f", {processes} API processes"
                say(f"{name} ({dbs.label}): reference")
                ref, ref_details = await _load(reference.base, tenant.ingest_headers, batch,
                                               clients, options, [reference.proc])
                say(f"{name} ({dbs.label}): hookstream api")
                details: dict[str, Any] = {"batch": batch, "clients": clients,
                                           "apiProcesses": processes,
                                           "reference": ref_details}
                label = (f"ingest-{dbs.label.lower()}-{'single' if batch == 1 else 'batch'}"
                         f"{'' if processes == 1 else f'-{processes}p'}")
                with profiled(ws, [api], label, options.profile, details):
                    rate, measured = await _load(base, tenant.ingest_headers, batch, clients,
                                                 options, [api])
                details.update(measured)
                say(f"{name} ({dbs.label}): {rate:,.0f} messages/s, reference {ref:,.0f}")
                figures.append(Figure("ingest", name, dbs.label, rate, "messages/s", ref,
                                      "FastAPI+uvicorn, parse only, messages/s",
                                      details=details))
    return figures
