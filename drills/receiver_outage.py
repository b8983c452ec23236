"""Drill 2: the receiver is down for a while (60 s; 10 s with --quick) under load.

``hookstream serve`` on SQLite keeps accepting while every attempt fails with a refused
connection, and retries on the drill's shortened schedule (``HOOKSTREAM_RETRY_SCHEDULE``). When
the receiver is back, everything accepted meanwhile must arrive, none lost.
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
    Processes,
    drill_frame,
    finish,
    provision,
    running_receiver,
    start_serve,
)

NAME = "receiver-outage"


def schedule_total(schedule: str) -> float:
    return sum(float(p) for p in schedule.split(",") if p.strip())


async def outage_drill(options: Options, workdir: Path, outage: float | None = None) -> DrillResult:
    """The receiver down for ``outage`` seconds (default: the options') under load."""

    async def body(ctx: Context, result: DrillResult) -> None:
        await _outage(ctx, result, options.outage if outage is None else outage)

    return await drill_frame(NAME, options, workdir, body)


async def _outage(ctx: Context, result: DrillResult, outage: float) -> None:
    o, say = ctx.options, ctx.say
    patience = schedule_total(o.retry_schedule) * (1 - 0.1)  # the default jitter is 10 %
    if outage >= patience:
        result.notes.append(f"the outage ({outage:g} s) outlasts the retry schedule "
                            f"({patience:.0f} s with jitter): messages will fail")
    ledger = Ledger()
    procs = Processes()
    lead = 2.0 if o.quick else 5.0  # seconds of normal traffic before and after
    async with running_receiver(ledger) as receiver, aiohttp.ClientSession() as session:
        try:
            _, base = await start_serve(ctx, procs, session)
            tenant = await provision(session, base, ctx.keys.admin, receiver.url)
            receiver.secret = tenant.secret
            say(f"load: {o.rate:.0f} msg/s; retry schedule {o.retry_schedule} s")
            async with HttpLoad(ledger, [base], tenant.gateways[0][1], NAME, o,
                                ctx.rng) as load:
                await asyncio.sleep(lead)
                await receiver.stop()
                down = time.monotonic()
                say(f"receiver DOWN (port {receiver.port} closed) for {outage:g} s; "
                    f"{len(ledger.accepted)} accepted, {len(ledger.arrivals)} delivered so far")
                while time.monotonic() - down < outage:
                    await asyncio.sleep(min(10.0, outage - (time.monotonic() - down)))
                    if time.monotonic() - down < outage - 0.5:
                        say(f"  receiver down {time.monotonic() - down:.0f} s: "
                            f"{len(ledger.accepted_between(down, time.monotonic()))} accepted "
                            "meanwhile")
                await receiver.start()
                up = time.monotonic()
                during = ledger.accepted_between(down, up)
                say(f"receiver UP again on port {receiver.port}: {len(during)} messages were "
                    "accepted while it was down")
                await asyncio.sleep(lead)
            say(f"load stopped: {load.posts} POSTs, {ledger.handed_out} messages offered, "
                f"{len(ledger.accepted)} accepted (202)")
            await finish(ctx, session, base, tenant, ledger, result)
            early = sum(1 for t in ledger.arrived_at if down <= t < up)
            waited = sorted(t - up for s, t in ledger.first_arrival.items()
                            if t >= up and ledger.accepted_at.get(s, up) < up)
            came = sum(1 for s in during if s in ledger.first_arrival)
            note = (f"{came} of the {len(during)} accepted during the {outage:g} s outage "
                    f"arrived after it; the backlog ({len(waited)}) arrived within "
                    f"{waited[-1] if waited else 0:.1f} s of the receiver's return (half "
                    f"within {waited[len(waited) // 2] if waited else 0:.1f} s)")
            say(note)
            result.notes.insert(0, note)
            if early:
                result.notes.append(f"{early} arrivals while the receiver was down?!")
        finally:
            procs.stop_all()
    procs.report(say, result)

