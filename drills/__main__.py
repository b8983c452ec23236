"""``python -m drills [--quick] [--only NAME]``: fault drills against real processes.

Each drill prints what it does and what it finds, then a table sums them up: messages
accepted, delivered, lost (must be 0) and duplicated. The exit code is 1 when a drill lost a
message or could not run to its end, 0 otherwise (a drill skipped for a missing program says
why and does not fail the run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from drills.common import DrillResult, Options
from drills.mosquitto_restart import mosquitto_drill
from drills.postgres_restart import postgres_drill
from drills.receiver_outage import outage_drill
from drills.sigkill import serve_drill, worker_drill

Drill = Callable[[Options, Path], Awaitable[DrillResult]]

DRILLS: dict[str, tuple[Drill, str]] = {
    "sigkill-serve": (serve_drill, "SIGKILL of hookstream serve under load (SQLite)"),
    "sigkill-worker": (worker_drill, "SIGKILL of a worker, api + 2 workers (PostgreSQL)"),
    "receiver-outage": (outage_drill, "the receiver down under load (SQLite)"),
    "postgres-restart": (postgres_drill, "PostgreSQL restarts under load (api + 2 workers)"),
    "mosquitto-restart": (mosquitto_drill, "graceful Mosquitto restarts under MQTT load"),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m drills",
        description="Fault drills: kill and restart hookstream's processes, its database, the "
                    "receiver and the broker under load, then count what was lost.",
        epilog="drills: " + "; ".join(f"{n} ({d})" for n, (_, d) in DRILLS.items()),
    )
    parser.add_argument("--quick", action="store_true",
                        help="3 kills, a 10 s outage, smaller loads (under 3 minutes)")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="run only this drill (a name or its first part, e.g. sigkill); "
                             "repeatable")
    parser.add_argument("--seed", type=int, default=None,
                        help="the random kill moments (default: from the clock; printed)")
    parser.add_argument("--kills", type=int, default=None, help="SIGKILLs per drill")
    parser.add_argument("--outage", type=float, default=None,
                        help="seconds the receiver is down (default 60, 10 with --quick)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working folder (logs, databases) and say where")
    return parser.parse_args(argv)


def select(only: list[str]) -> list[str]:
    if not only:
        return list(DRILLS)
    chosen: list[str] = []
    for want in only:
        found = [n for n in DRILLS if n == want or n.startswith(want)]
        if not found:
            raise SystemExit(f"no drill named {want!r}; drills: {', '.join(DRILLS)}")
        chosen += [n for n in found if n not in chosen]
    return chosen


def table(results: list[DrillResult]) -> Table:
    out = Table(title="hookstream drills", show_lines=True)
    out.add_column("drill", style="bold")
    for column in ("accepted", "delivered", "lost", "duplicated", "seconds"):
        out.add_column(column, justify="right")
    out.add_column("notes", overflow="fold")
    for r in results:
        if r.skipped:
            out.add_row(r.name, "-", "-", "-", "-", f"{r.seconds:.0f}",
                        f"[yellow]skipped: {r.skipped}[/]")
            continue
        lost = f"[bold red]{r.lost}[/]" if r.lost else "[green]0[/]"
        notes = "\n".join(r.notes)
        if r.error:
            notes = f"[bold red]ERROR {r.error}[/]" + ("\n" + notes if notes else "")
        out.add_row(r.name, str(r.accepted), str(r.delivered), lost, str(r.duplicated),
                    f"{r.seconds:.0f}", notes)
    return out


async def run(names: list[str], options: Options, root: Path) -> list[DrillResult]:
    results = []
    for name in names:
        drill, description = DRILLS[name]
        print(f"\n=== {name}: {description} ===", flush=True)
        results.append(await drill(options, root / name))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = select(args.only)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    overrides: dict[str, object] = {"seed": seed, "keep": args.keep}
    if args.kills is not None:
        overrides["kills"] = args.kills
    if args.outage is not None:
        overrides["outage"] = args.outage
    options = Options.quick_run(**overrides) if args.quick else Options.full(**overrides)
    root = Path(tempfile.mkdtemp(prefix="hookstream-drills-"))
    # Wide enough for the notes when the output is not a terminal (make, CI logs).
    console = Console(width=None if sys.stdout.isatty() else 150)
    print(f"hookstream drills ({'quick' if options.quick else 'full'} run, seed {seed}; "
          f"again with --seed {seed}): {', '.join(names)}", flush=True)
    print(f"kills {options.kills} per drill, receiver outage {options.outage:g} s, "
          f"{options.rate:g} msg/s over HTTP, {options.mqtt_rate:g} msg/s over MQTT, "
          f"lease {options.lease_seconds:g} s, retry schedule {options.retry_schedule} s; "
          f"working folder {root}", flush=True)
    if os.geteuid() == 0:
        print("running as root: PostgreSQL runs as 'nobody' (runuser)", flush=True)
    started = time.monotonic()
    results: list[DrillResult] = []
    try:
        results = asyncio.run(run(names, options, root))
    finally:
        # A failed drill keeps its logs and databases: they are the evidence.
        if args.keep or not results or any(r.failed or r.keep for r in results):
            print(f"kept {root} (logs of every process, the databases)", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    console.print(table(results))
    failed = [r for r in results if r.failed]
    lost = sum(r.lost for r in results)
    console.print(
        f"{len(results)} drills in {time.monotonic() - started:.0f} s: "
        f"{sum(r.accepted for r in results)} accepted, {sum(r.delivered for r in results)} "
        f"delivered, {lost} lost, {sum(r.duplicated for r in results)} duplicated"
        + (f"; skipped: {', '.join(r.name for r in results if r.skipped)}"
           if any(r.skipped for r in results) else ""),
        highlight=False,
    )
    if failed:
        console.print(f"[bold red]FAILED[/]: {', '.join(r.name for r in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
