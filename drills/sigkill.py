"""Drill 1: SIGKILL under load.

``sigkill-serve``: ``hookstream serve`` on SQLite, killed with SIGKILL at random moments while a
load generator posts to ``/ingest/v1/values``, and started again each time.

``sigkill-worker``: an ``api`` and two ``worker`` processes on a PostgreSQL of the drill's own;
one of the workers (at random) is killed with SIGKILL at random moments and started again.

Either way every message answered 202 must reach the receiver; what was in flight at a kill
may arrive twice (same webhook-id, at least once).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from drills.common import (
    WORKER_STARTED,
    Context,
    DrillResult,
    HttpLoad,
    Ledger,
    Options,
    Processes,
    drill_frame,
    finish,
    hookstream_env,
    migrate,
    provision,
    running_postgres,
    running_receiver,
    start_serve,
    start_split,
    wait_ready,
)

SERVE = "sigkill-serve"
WORKER = "sigkill-worker"


async def serve_drill(options: Options, workdir: Path, kills: int | None = None) -> DrillResult:
    """SIGKILL of ``hookstream serve`` on SQLite, ``kills`` times (default: the options')."""

    async def body(ctx: Context, result: DrillResult) -> None:
        await _serve(ctx, result, options.kills if kills is None else kills)

    return await drill_frame(SERVE, options, workdir, body)


async def worker_drill(options: Options, workdir: Path, kills: int | None = None) -> DrillResult:
    """SIGKILL of a ``hookstream worker`` (api + 2 workers on PostgreSQL), ``kills`` times."""

    async def body(ctx: Context, result: DrillResult) -> None:
        await _worker(ctx, result, options.kills if kills is None else kills)

    return await drill_frame(WORKER, options, workdir, body)


async def _serve(ctx: Context, result: DrillResult, kills: int) -> None:
    o, say = ctx.options, ctx.say
    ledger = Ledger()
    procs = Processes()
    async with running_receiver(ledger, o.receiver_delay) as receiver, \
            aiohttp.ClientSession() as session:
        try:
            serve, base = await start_serve(ctx, procs, session)
            tenant = await provision(session, base, ctx.keys.admin, receiver.url)
            receiver.secret = tenant.secret
            say(f"load: {o.rate:.0f} msg/s, {o.clients} clients, 1-{o.max_batch} messages per "
                f"POST; receiver {receiver.url}; lease {o.lease_seconds:g} s")
            async with HttpLoad(ledger, [base], tenant.gateways[0][1], SERVE, o,
                                ctx.rng) as load:
                for n in range(1, kills + 1):
                    wait = ctx.rng.uniform(*o.kill_after)
                    await asyncio.sleep(wait)
                    accepted, arrived = len(ledger.accepted), len(ledger.arrivals)
                    serve.kill()
                    say(f"kill {n}/{kills}: SIGKILL of serve after {wait:.1f} s of load "
                        f"(so far {accepted} accepted, {arrived} delivered)")
                    serve.start()
                    took = await wait_ready(session, base, proc=serve)
                    say(f"  serve started again (pid {serve.pid}), ready in {took:.1f} s")
                await asyncio.sleep(ctx.rng.uniform(*o.kill_after))
            say(f"load stopped: {load.posts} POSTs, {ledger.handed_out} messages offered, "
                f"{len(ledger.accepted)} accepted (202)")
            await finish(ctx, session, base, tenant, ledger, result)
        finally:
            procs.stop_all()
    procs.report(say, result)


async def _worker(ctx: Context, result: DrillResult, kills: int) -> None:
    o, say = ctx.options, ctx.say
    with running_postgres(o.keep) as pg:
        url = await pg.create_database("hookstream")
        say(f"PostgreSQL {pg.version} of our own at 127.0.0.1:{pg.port} ({pg.directory})")
        env = hookstream_env(url, ctx.workdir / "var", ctx.keys, o)
        await migrate(env, ctx.workdir)
        ledger = Ledger()
        procs = Processes()
        async with running_receiver(ledger, o.receiver_delay) as receiver, \
                aiohttp.ClientSession() as session:
            try:
                _, workers, base = await start_split(ctx, procs, session, env)
                tenant = await provision(session, base, ctx.keys.admin, receiver.url)
                receiver.secret = tenant.secret
                say(f"load: {o.rate:.0f} msg/s, {o.clients} clients, 1-{o.max_batch} messages "
                    f"per POST; lease {o.lease_seconds:g} s")
                async with HttpLoad(ledger, [base], tenant.gateways[0][1], WORKER, o,
                                    ctx.rng) as load:
                    for n in range(1, kills + 1):
                        wait = ctx.rng.uniform(*o.kill_after)
                        await asyncio.sleep(wait)
                        victim = ctx.rng.choice(workers)
                        accepted, arrived = len(ledger.accepted), len(ledger.arrivals)
                        pid = victim.pid
                        victim.kill()
                        say(f"kill {n}/{kills}: SIGKILL of {victim.name} (pid {pid}) after "
                            f"{wait:.1f} s (so far {accepted} accepted, {arrived} delivered)")
                        victim.start()
                        took = await victim.wait_log(WORKER_STARTED)
                        say(f"  {victim.name} started again (pid {victim.pid}), working in "
                            f"{took:.1f} s")
                    await asyncio.sleep(ctx.rng.uniform(*o.kill_after))
                say(f"load stopped: {load.posts} POSTs, {ledger.handed_out} messages offered, "
                    f"{len(ledger.accepted)} accepted (202)")
                await finish(ctx, session, base, tenant, ledger, result)
            finally:
                procs.stop_all()
        procs.report(say, result)
