"""Load generators: a bare aiohttp client, closed loop (count or duration) or paced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import percentiles


def session(limit: int, timeout: float = 60.0) -> aiohttp.ClientSession:
    """A bare aiohttp client: one pool of ``limit`` connections, nothing else. ``timeout``
    counts from the call, waiting for a free connection included."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=timeout),
        skip_auto_headers=("Accept-Encoding",),
    )


@dataclass
class LoadResult:
    requests: int
    items: int
    errors: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    send_lag: float | None = None  # paced load: how late the last request left (seconds)

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "items": self.items, "errors": self.errors,
            "seconds": round(self.seconds, 3), "statuses": self.statuses,
            "responseMs": percentiles(self.latencies),
            **({"sendLagMs": round(self.send_lag * 1000, 1)} if self.send_lag is not None
               else {}),
        }


async def post_count(
    http: aiohttp.ClientSession, url: str, count: int, concurrency: int,
    request: Callable[[int], tuple[bytes, dict[str, str]]], expect: int,
    items_per_request: int = 1,
) -> LoadResult:
    """POST ``count`` requests with ``concurrency`` tasks; time from first to last."""
    next_index = 0
    result = LoadResult(0, 0, 0, 0.0)

    async def one_task() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            body, headers = request(i)
            await _post(http, url, body, headers, expect, items_per_request, result)

    started = time.perf_counter()
    await asyncio.gather(*(one_task() for _ in range(min(concurrency, count))))
    result.seconds = time.perf_counter() - started
    return result


async def post_for(
    http: aiohttp.ClientSession, url: str, seconds: float, warmup: float, concurrency: int,
    request: Callable[[int], tuple[bytes, dict[str, str]]], expect: int,
    items_per_request: int = 1,
) -> LoadResult:
    """POST with ``concurrency`` tasks for ``warmup + seconds``; counts the requests that
    start after the warm-up, over the time from its end to the last answer."""
    counter = 0
    warm = LoadResult(0, 0, 0, 0.0)
    result = LoadResult(0, 0, 0, 0.0)
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds

    async def one_task() -> None:
        nonlocal counter
        while time.perf_counter() < end:
            counter += 1
            body, headers = request(counter)
            sink = result if time.perf_counter() >= measure_from else warm
            await _post(http, url, body, headers, expect, items_per_request, sink)

    await asyncio.gather(*(one_task() for _ in range(concurrency)))
    result.seconds = max(time.perf_counter(), end) - measure_from
    return result


async def _post(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                expect: int, items: int, result: LoadResult) -> None:
    t0 = time.perf_counter()
    try:
        async with http.post(url, data=body, headers=headers) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    result.latencies.append(time.perf_counter() - t0)
    result.requests += 1
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if status == expect:
        result.items += items
    else:
        result.errors += 1


async def post_paced(
    http: aiohttp.ClientSession, url: str, rate: float, seconds: float,
    request: Callable[[int, float], tuple[bytes, dict[str, str]]], expect: int,
) -> LoadResult:
    """Open loop: request i is due at start + i / rate whatever the answers; ``request``
    gets i and that due time (epoch seconds; now, if the loop woke before it), which it puts
    in the body."""
    total = int(rate * seconds)
    result = LoadResult(0, 0, 0, 0.0)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start_loop = loop.time() + 0.05
    start_wall = time.time() + (start_loop - loop.time())
    for i in range(total):
        due = i / rate
        delay = start_loop + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # From its due time (a late send counts against us), but never later than it is
        # sent: uvloop's millisecond timers can wake a sleep early, and a request sent before
        # its due time read as a negative latency.
        body, headers = request(i, min(start_wall + due, time.time()))
        task = asyncio.create_task(_post(http, url, body, headers, expect, 1, result))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    result.send_lag = loop.time() - (start_loop + (total - 1) / rate)
    if tasks:
        await asyncio.wait(tasks)
    result.seconds = loop.time() - start_loop
    return result
