"""Drill 3: PostgreSQL restarts under load.

An ``api`` and two ``worker`` processes on a PostgreSQL of the drill's own, under HTTP load;
PostgreSQL is stopped (``pg_ctl stop -m fast``, or ``-m immediate``: a crash, recovered from
the WAL at the next start) and started again. Ingest requests during the restart may fail (they
are not accepted), but every 202 must arrive. The drill also reports how long ingest and
delivery took to come back after each restart.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from drills.common import (
    Context,
    DrillResult,
    HttpLoad,
    Ledger,
    Options,
    Postgres,
    Processes,
    drill_frame,
    finish,
    hookstream_env,
    migrate,
    provision,
    running_postgres,
    running_receiver,
    start_split,
)

NAME = "postgres-restart"


async def postgres_drill(options: Options, workdir: Path) -> DrillResult:
    """PostgreSQL stopped and started again under load, once per mode of ``pg_restarts``."""

    async def body(ctx: Context, result: DrillResult) -> None:
        await _restarts(ctx, result)

    return await drill_frame(NAME, options, workdir, body)


async def _first_after(times: dict[int, float] | list[float], moment: float,
                       timeout: float) -> float | None:
    """Seconds from ``moment`` to the first of ``times`` after it (waiting up to ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        values = list(times.values()) if isinstance(times, dict) else list(times)
        later = [t for t in values if t >= moment]
        if later:
            return min(later) - moment
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)


async def _restarts(ctx: Context, result: DrillResult) -> None:
    o, say = ctx.options, ctx.say
    with running_postgres(o.keep) as pg:
        url = await pg.create_database("hookstream")
        say(f"PostgreSQL {pg.version} of our own at 127.0.0.1:{pg.port} (fsync on)")
        env = hookstream_env(url, ctx.workdir / "var", ctx.keys, o)
        await migrate(env, ctx.workdir)
        ledger = Ledger()
        procs = Processes()
        async with running_receiver(ledger, o.receiver_delay) as receiver, \
                aiohttp.ClientSession() as session:
            try:
                _, _, base = await start_split(ctx, procs, session, env)
                tenant = await provision(session, base, ctx.keys.admin, receiver.url)
                receiver.secret = tenant.secret
                say(f"load: {o.rate:.0f} msg/s, {o.clients} clients")
                async with HttpLoad(ledger, [base], tenant.gateways[0][1], NAME, o,
                                    ctx.rng) as load:
                    for n, mode in enumerate(o.pg_restarts, 1):
                        await asyncio.sleep(ctx.rng.uniform(2.0, 4.0))
                        say(f"restart {n}/{len(o.pg_restarts)}: pg_ctl stop -m {mode} "
                            f"({len(ledger.accepted)} accepted so far)")
                        line = await _restart(pg, mode, ledger)
                        say("  " + line)
                        result.notes.append(line)
                    await asyncio.sleep(ctx.rng.uniform(2.0, 4.0))
                say(f"load stopped: {load.posts} POSTs, {ledger.handed_out} messages offered, "
                    f"{len(ledger.accepted)} accepted (202)")
                await finish(ctx, session, base, tenant, ledger, result)
            finally:
                procs.stop_all()
        procs.report(say, result)


async def _restart(pg: Postgres, mode: str, ledger: Ledger) -> str:
    """Stop PostgreSQL in ``mode``, start it a second later; how ingest and delivery fared."""
    refused_before = sum(ledger.refused.values())
    stopped = time.monotonic()
    await asyncio.to_thread(pg.stop, mode)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(pg.start)
    back = time.monotonic()
    ingest = await _first_after(ledger.accepted_at, back, 30)
    delivery = await _first_after(ledger.arrived_at, back, 30)
    refused = sum(ledger.refused.values()) - refused_before
    last = max((t for t in ledger.accepted_at.values() if t < stopped), default=stopped)
    gap = "" if ingest is None else f" (no 202 for {back + ingest - last:.1f} s)"
    return (f"restart -m {mode}: {back - stopped:.1f} s down, {refused} messages refused; "
            f"202s {_secs(ingest)} after the start{gap}, webhooks {_secs(delivery)} after it")


def _secs(value: float | None) -> str:
    return "never (30 s)" if value is None else f"{value:.1f} s"
