"""``python -m bench`` (``make bench``): hookstream's throughput and latency, each figure next
to a reference measured in the same run, so that it reads as a ratio.

Prints a table (with the project's targets, met or not), writes bench/results/latest.json and
a timestamped copy, and charts (bench/results/*.png) when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from bench.backlog import backlog
from bench.brokers import BROKER_BENCHMARKS, broker_drain
from bench.charts import draw
from bench.common import (
    RESULTS,
    Databases,
    Figure,
    Options,
    PostgresDatabases,
    Receiver,
    SqliteDatabases,
    Workspace,
    fsync_probe,
    machine,
    postgresql_url,
    say,
    timestamp,
)
from bench.drain import drain
from bench.fanout import fanout
from bench.ingest import Reference, ingest
from bench.latency import latency, sustained
from bench.mqtt import mosquitto_missing, mqtt_ingest
from bench.profile import py_spy
from bench.targets import verdict

BENCHMARKS = ("drain", "ingest", "latency", "sustained", "fanout", "isolation", "backlog",
              "mqtt", *BROKER_BENCHMARKS)
QUICK = dict(deliveries=5_000, ingest_seconds=3.0, ingest_warmup=0.5, latency_seconds=3.0,
             sustained_seconds=2.0, fanout_messages=50, backlog=50_000, mqtt_messages=5_000,
             broker_messages=2_000)
FULL = dict(deliveries=100_000, ingest_seconds=15.0, latency_seconds=30.0,
            fanout_messages=1000, backlog=1_000_000, mqtt_messages=100_000,
            broker_messages=50_000)


def parse_options(argv: list[str]) -> tuple[Options, list[int]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0],
        epilog="PostgreSQL runs when HOOKSTREAM_BENCH_POSTGRESQL_URL or "
               "HOOKSTREAM_TEST_POSTGRESQL_URL is set (a fresh database is created and "
               "dropped). With make: make bench BENCH_ARGS='--quick'.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="5,000 deliveries, 3 s of ingest and of latency, 50 messages "
                           "fanned out, a backlog of 50,000, 5,000 MQTT messages")
    size.add_argument("--full", action="store_true",
                      help="100,000 deliveries, 15 s of ingest, 30 s of latency, 1,000 "
                           "messages fanned out, a backlog of 1,000,000, 100,000 MQTT "
                           "messages")
    parser.add_argument("--deliveries", type=int, help="drain backlog (default 20,000)")
    parser.add_argument("--fanout-messages", type=int,
                        help="messages fanned out to every connector (default 200)")
    parser.add_argument("--fanout-connectors", type=int,
                        help="healthy connectors of the fan-out (default 100)")
    parser.add_argument("--backlog", type=int,
                        help="the large backlog (default 200,000; 1,000,000 with --full)")
    parser.add_argument("--broker-messages", type=int,
                        help="deliveries drained to each broker type (default 10,000)")
    parser.add_argument("--mqtt-messages", type=int,
                        help="messages published over MQTT (default 20,000)")
    parser.add_argument("--ingest-seconds", type=float, help="measured span per ingest figure")
    parser.add_argument("--latency-rate", help="offered msg/s, or several comma-separated "
                                               "(default 1000)")
    parser.add_argument("--latency-seconds", type=float, help="default 10 (30 with --full)")
    parser.add_argument("--concurrency", type=int,
                        help="the drain reference's connections and tasks (default 256)")
    parser.add_argument("--connector-concurrency", type=int,
                        help="the bench connector's limits.maxConcurrency (default 256 per "
                             "worker process)")
    parser.add_argument("--workers", default="1,2",
                        help="worker processes for the PostgreSQL drain (default 1,2)")
    parser.add_argument("--sqlite-synchronous", choices=("full", "normal"),
                        help="HOOKSTREAM_SQLITE_SYNCHRONOUS (default full, hookstream's)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    parser.add_argument("--postgresql-url", help="instead of the environment variables")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record the hookstream processes (pip install py-spy); "
                             "collapsed stacks and a summary land in bench/results/")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (databases, process logs)")
    args = parser.parse_args(argv)

    options = Options()
    if args.quick:
        options = replace(options, mode="quick", **QUICK)  # type: ignore[arg-type]
    elif args.full:
        options = replace(options, mode="full", **FULL)  # type: ignore[arg-type]
    overrides: dict[str, Any] = {
        "deliveries": args.deliveries, "ingest_seconds": args.ingest_seconds,
        "latency_rates": tuple(float(r) for r in args.latency_rate.split(","))
        if args.latency_rate else None,
        "latency_seconds": args.latency_seconds,
        "concurrency": args.concurrency, "connector_concurrency": args.connector_concurrency,
        "sqlite_synchronous": args.sqlite_synchronous,
        "fanout_messages": args.fanout_messages, "fanout_connectors": args.fanout_connectors,
        "backlog": args.backlog, "mqtt_messages": args.mqtt_messages,
        "broker_messages": args.broker_messages,
    }
    options = replace(options, **{k: v for k, v in overrides.items() if v is not None})
    if args.only:
        only = frozenset(s.strip() for s in args.only.split(",") if s.strip())
        unknown = only - set(BENCHMARKS)
        if unknown:
            parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
        options = replace(options, only=only)
    pg = None if args.no_postgresql else (args.postgresql_url or postgresql_url())
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    options = replace(options, postgresql_url=pg, profile=args.profile, keep=args.keep)
    workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    return options, workers


async def run(options: Options, workers: list[int]) -> dict[str, Any]:
    started = time.time()
    doc: dict[str, Any] = {
        "startedAt": timestamp(), "mode": options.mode,
        "options": {k: (sorted(v) if isinstance(v, frozenset) else v)
                    for k, v in vars(options).items() if k != "postgresql_url"},
        "machine": machine(), "figures": [], "errors": [], "skipped": [],
    }
    figures: list[Figure] = []
    ws = Workspace(options)
    doc["machine"]["fsyncMs"] = fsync_probe(ws.dir)
    say(f"workspace {ws.dir}; migrating the SQLite template")
    databases: list[Databases] = [SqliteDatabases(ws)]
    try:
        if options.postgresql_url:
            pg = PostgresDatabases(ws, options.postgresql_url)
            databases.append(pg)
            await pg.open()
            doc["postgresql"] = await pg.server_info()
        else:
            say("PostgreSQL skipped (set HOOKSTREAM_BENCH_POSTGRESQL_URL)")
        receiver = await Receiver.start(ws)

        async def attempt(label: str, make: Callable[[], Awaitable[list[Figure]]]) -> None:
            try:
                figures.extend(await make())
            except Exception as exc:  # noqa: BLE001 - one failed figure must not lose the rest
                say(f"{label} FAILED: {exc}")
                doc["errors"].append({"benchmark": label, "error": str(exc),
                                      "traceback": traceback.format_exc()})

        if "drain" in options.only:
            for dbs in databases:
                for n in ([1] if isinstance(dbs, SqliteDatabases) else workers):
                    await attempt(f"drain {dbs.label} {n}w",
                                  partial(_listed, drain(ws, dbs, receiver, options, n)))
        if "ingest" in options.only:
            reference = await Reference.start(ws)
            for dbs in databases:
                await attempt(f"ingest {dbs.label}",
                              partial(ingest, ws, dbs, receiver, reference, options))
            ws.stop(reference.proc)
        if "latency" in options.only:
            for dbs in databases:
                await attempt(f"latency {dbs.label}", partial(latency, ws, dbs, receiver, options))
        if "sustained" in options.only:  # make run's serve: SQLite
            await attempt(f"sustained {databases[0].label}",
                          partial(sustained, ws, databases[0], receiver, options))
        if options.only & {"fanout", "isolation"}:
            for dbs in databases:
                await attempt(f"fan-out {dbs.label}", partial(
                    fanout, ws, dbs, receiver, options, "isolation" in options.only))
            # Fan-out's target is a share of the same database's drain (1 worker).
            for fig in figures:
                if fig.benchmark == "fanout":
                    drained = next((f for f in figures if f.benchmark == "drain"
                                    and f.database == fig.database
                                    and f.details.get("workers") == 1), None)
                    if drained is not None:
                        fig.details["drainPerSecond"] = drained.value
        # The large backlog and MQTT on SQLite (hookstream's default, one node) only.
        sqlite = databases[0]
        if "backlog" in options.only:
            drained = next((f for f in figures if f.benchmark == "drain"
                            and f.database == sqlite.label and f.details.get("workers") == 1),
                           None)
            await attempt(f"backlog {sqlite.label}",
                          partial(backlog, ws, sqlite, receiver, options, drained))
        if "mqtt" in options.only:
            missing = mosquitto_missing()
            if missing:
                say(f"MQTT skipped: {missing}")
                doc["skipped"].append({"benchmark": "mqtt", "reason": missing})
            else:
                await attempt(f"mqtt {sqlite.label}",
                              partial(mqtt_ingest, ws, sqlite, receiver, options))
        for name in BROKER_BENCHMARKS:  # to MQTT, AMQP and NATS, on SQLite
            if name not in options.only:
                continue
            if name == "mqtt_drain" and mosquitto_missing():
                say(f"{name} skipped: {mosquitto_missing()}")
                doc["skipped"].append({"benchmark": name, "reason": mosquitto_missing()})
                continue
            await attempt(f"{name} {sqlite.label}", partial(
                broker_drain, ws, sqlite, options, name.removesuffix("_drain")))
        await receiver.close()
    finally:
        ws.close()
        for dbs in databases:
            await dbs.close()
    doc["figures"] = [f.as_json() for f in figures]
    doc["machine"]["loadAverageAtEnd"] = list(os.getloadavg())
    doc["durationSeconds"] = round(time.time() - started, 1)
    return doc


async def _listed(figure: Awaitable[Figure]) -> list[Figure]:
    return [await figure]


def _number(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    if unit == "ms":
        return f"{value:,.1f} ms"
    return f"{value:,.0f} {unit}"


def _note(fig: dict[str, Any]) -> str:
    d = fig["details"]
    cpu = d.get("cpu", {}).get("processCores", {})
    busy = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "bench (client)" and v)
    machine_busy = d.get("cpu", {}).get("machineCoresBusy")
    if machine_busy is not None:
        busy += f" (machine {machine_busy:.2f})"
    if fig["benchmark"] == "drain":
        return (f"from readiness at {d['secondsToReady']:.2f} s; "
                f"{d['perSecondFromStart']:,.0f}/s from the worker's start; none pending at "
                f"{d['secondsUntilNonePending']:.1f} s; dup {d['duplicates']}; limit "
                f"{d['connectorMaxConcurrency']}; cores: {busy}")
    if fig["benchmark"] == "ingest":
        resp = d.get("responseMs", {})
        return (f"response p50 {resp.get('p50')} ms, p99 {resp.get('p99')} ms; "
                f"cores: {busy}")
    if fig["benchmark"] in ("fanout", "isolation"):
        hanging = d.get("hanging")
        held = (f"hanging connector: {hanging['requests']} requests held, "
                f"{hanging['maxConnections']} connections; " if hanging else "")
        return (f"{held}{d['deliveries']:,} deliveries, last {d['secondsIngestToLastDelivery']:.2f}"
                f" s after the first ingest (first {d['secondsToFirstDelivery']:.2f} s); "
                f"dup {d['duplicates']}; cores: {busy}")
    if fig["benchmark"] == "backlog":
        if "see" in d:
            return "VmHWM of the worker; reference: the drain's worker"
        return (f"steady {d['steadyPerSecond']:,.0f}/s; backlog ingested at "
                f"{d['backlogIngest']['messagesPerSecond']:,.0f} msg/s; dup "
                f"{d['duplicates']}; cores: {busy}")
    if fig["benchmark"] == "mqtt":
        return (f"{d['messages']:,} stored in {d['secondsPublishToStored']:.2f} s; broker "
                f"acked the publisher at {d['publisherAckedPerSecond']:,.0f}/s; cores: {busy}")
    if "client" in d:
        achieved = d.get("acceptedPerSecond") or 0.0
        overloaded = (f"[bold red]overloaded: 202s came at {achieved:,.0f}/s[/]; "
                      if achieved < 0.95 * d["offeredPerSecond"] else "")
        return (f"{overloaded}{d['accepted']:,} accepted, {d['received']:,} received; "
                f"max {d['percentilesMs']['max']} ms; 202 p50 "
                f"{d['client']['responseMs']['p50']} ms; cores: {busy}")
    return ""


def print_table(doc: dict[str, Any], console: Console) -> None:
    m = doc["machine"]
    table = Table(
        title=f"hookstream bench ({doc['mode']}): {m['cpu']}, {m['cores']} cores, Python "
              f"{m['python']}, SQLite {m['sqlite']}"
              + (f", PostgreSQL {doc['postgresql']['server_version']}"
                 if "postgresql" in doc else ""),
        caption=f"{doc['durationSeconds']:.0f} s; ratio = hookstream / reference (measured "
                "just before it, same run); load average at start "
                f"{m['loadAverageAtStart'][0]:.2f}",
    )
    for col, justify in (("benchmark", "left"), ("db", "left"), ("hookstream", "right"),
                         ("reference", "right"), ("ratio", "right"), ("target", "left"),
                         ("notes", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for fig in doc["figures"]:
        ratio = fig["ratio"]
        nan = ratio is None or math.isnan(ratio)
        good = not nan and ((ratio >= 1) if fig["higherIsBetter"] else (ratio <= 1))
        colour = "green" if good else "yellow"
        v = verdict(fig)
        target = "" if v is None else (
            f"{v.target}: [{'green' if v.met else 'bold red'}]{v.mark}[/]")
        table.add_row(
            fig["name"], fig["database"], _number(fig["value"], fig["unit"]),
            _number(fig["reference"], fig["referenceUnit"]),
            f"[{colour}]{ratio:.2f}×[/]" if not nan else "–", target, _note(fig),
        )
    console.print(table)
    for skipped in doc.get("skipped", []):
        console.print(f"[yellow]{skipped['benchmark']} skipped:[/] {skipped['reason']}")
    for err in doc["errors"]:
        console.print(f"[bold red]{err['benchmark']} failed:[/] {err['error']}")
    for fig in doc["figures"]:
        for name, prof in fig["details"].get("profile", {}).items():
            console.print(f"[bold]profile[/] {fig['name']} ({fig['database']}), {name}: GIL "
                          f"held {100 * prof['gilBusy']:.0f}% of the time; samples in "
                          f"{prof['file']} (python -m bench.profile FILE for more)")
            packages = ", ".join(f"{r['name']} {r['percent']:.0f}%"
                                 for r in prof["packagesSelf"][:8])
            console.print(f"   by package: {packages}")
            for row in prof["selfTop"][:6]:
                console.print(f"   {row['percent']:5.1f}%  {row['name']}")


def write(doc: dict[str, Any]) -> list[str]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    paths = [RESULTS / "latest.json", RESULTS / f"{doc['startedAt']}.json"]
    for path in paths:
        path.write_bytes(data + b"\n")
    return [str(p) for p in paths]


def main(argv: list[str] | None = None) -> int:
    options, workers = parse_options(sys.argv[1:] if argv is None else argv)
    try:
        import uvloop
    except ImportError:
        doc = asyncio.run(run(options, workers))
    else:
        doc = uvloop.run(run(options, workers))
    for fig in doc["figures"]:
        v = verdict(fig)
        if v is not None:
            fig["target"] = {"target": v.target, "met": v.met}
    console = Console(width=max(Console().width, 200))
    print_table(doc, console)
    for path in write(doc):
        say(f"wrote {path}")
    charts = draw(doc)
    if isinstance(charts, str):
        say(charts)
    else:
        for chart in charts:
            say(f"wrote {chart}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
