"""``python -m bench.ingest_alternatives`` (``make bench-ingest``): ingest's parts against
alternatives, to decide by measurement whether to swap them.

1. Validation of the datastream message format: hookstream's (``parse_messages``: orjson, then
   pydantic-core with strict types, lengths, ranges and no extra fields, then the message
   limits) against msgspec decoding the same bytes into a ``Struct`` with the same
   constraints (``msgspec.json.decode(..., type=list[Message])`` and the same limit checks).
   Time per message for one message and for a batch of 100, and whether both refuse the
   same bad bodies (every check of today must hold in an alternative).
2. The HTTP server: bench/refapp.py (FastAPI, parse only) on uvicorn, as hookstream serves,
   against the same ASGI app on granian (Rust: hyper and tokio), 64 clients posting single
   messages over keep-alive connections with the bench's load client; the server's CPU
   per request counts most on a busy machine.

msgspec and granian are not hookstream's dependencies: one not installed is reported and
skipped. To measure both, use a venv of their own::

    python3 -m venv /tmp/alt-venv
    /tmp/alt-venv/bin/pip install -e . msgspec granian
    make bench-ingest ALT_PYTHON=/tmp/alt-venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from typing import Annotated, Any

import orjson

from bench.common import free_port
from bench.load import post_for, session
from hookstream.errors import HookstreamError
from hookstream.pipeline.message import DEFAULT_LIMITS, parse_messages

LONG_MAX = 2**63 - 1


def sample(i: int) -> dict[str, Any]:
    return {
        "deviceId": f"dev-{i % 50}", "property": "energy", "timestamp": 1_700_000_000_000 + i,
        "payload": {"value": i * 1.5, "quality": "good"}, "receivedAt": None,
        "scaledPayload": i * 0.1, "name": "Energy", "unit": "kWh", "externalId": "ext-1",
        "propertyId": "p-1", "equipmentId": "e-1", "gatewayInterfaceId": "gi-1",
        "slug": "energy", "isOutOfService": False, "tags": {"site": "north", "line": "3"},
    }


# Bodies every validator must refuse (a subset of tests/test_message.py's cases).
BAD = [
    {"property": "p", "timestamp": 1, "payload": 1},  # no deviceId
    {"deviceId": "", "property": "p", "timestamp": 1, "payload": 1},  # empty
    {"deviceId": "d", "property": "p", "timestamp": "1", "payload": 1},  # string timestamp
    {"deviceId": "d", "property": "p", "timestamp": -1, "payload": 1},  # negative
    {"deviceId": "d", "property": "p", "timestamp": 2**63, "payload": 1},  # past a Long
    {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1, "extra": 1},  # unknown
    {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1, "tags": {"a": 1}},
    {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1, "isOutOfService": 1},
    {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1, "scaledPayload": "1"},
    {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1, "name": "x" * 2000},
    {"deviceId": "d", "property": "p", "timestamp": True, "payload": 1},  # a boolean
]


def hookstream_validator() -> Any:
    def validate(raw: bytes) -> int:
        return len(parse_messages(raw)[0])
    return validate


def msgspec_validator() -> Any:
    import msgspec

    Str256 = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    Long = Annotated[int, msgspec.Meta(ge=0, le=LONG_MAX)]

    # defstruct: this module's annotations are strings (``from __future__``), and these
    # types are local to the function.
    optional = [(name, str | None, None) for name in (
        "name", "unit", "externalId", "propertyId", "equipmentId", "gatewayInterfaceId",
        "slug")]
    Message = msgspec.defstruct(  # noqa: N806
        "Message",
        [("deviceId", Str256), ("property", Str256), ("timestamp", Long), ("payload", Any),
         ("receivedAt", Long | None, None), ("scaledPayload", int | float | None, None),
         *optional, ("isOutOfService", bool | None, None),
         ("tags", dict[str, str], msgspec.field(default_factory=dict))],
        forbid_unknown_fields=True,
    )

    many = msgspec.json.Decoder(list[Message] | Message)  # type: ignore[valid-type]
    limited = ("name", "unit", "externalId", "propertyId", "equipmentId",
               "gatewayInterfaceId", "slug")
    longest, max_tags = DEFAULT_LIMITS.max_string_length, DEFAULT_LIMITS.max_tags

    def validate(raw: bytes) -> int:
        try:
            got = many.decode(raw)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from exc
        items = got if isinstance(got, list) else [got]
        if not 1 <= len(items) <= 1000:
            raise ValueError("1 to 1000 messages")
        for m in items:
            for name in limited:
                value = getattr(m, name)
                if value is not None and len(value) > longest:
                    raise ValueError(f"{name} too long")
            if len(m.tags) > max_tags:
                raise ValueError("too many tags")
        return len(items)

    return validate


def time_validation(validate: Any, raw: bytes, per_call: int, seconds: float = 1.5) -> float:
    """Microseconds per message, best of three spans."""
    best = float("inf")
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        end = start + seconds / 3
        while time.perf_counter() < end:
            for _ in range(50):
                validate(raw)
            n += 50
        best = min(best, (time.perf_counter() - start) / (n * per_call) * 1e6)
    return best


def validation_rows() -> list[tuple[str, str, str]]:
    single = orjson.dumps(sample(1))
    batch = orjson.dumps([sample(i) for i in range(100)])
    candidates = {"hookstream (orjson + pydantic-core)": hookstream_validator}
    if importlib.util.find_spec("msgspec"):
        candidates["msgspec Struct"] = msgspec_validator
    rows = []
    base: dict[str, float] = {}
    for name, make in candidates.items():
        validate = make()
        refused = 0
        for bad in BAD:
            try:
                validate(orjson.dumps(bad))
            except (ValueError, HookstreamError):
                refused += 1
        one = time_validation(validate, single, 1)
        hundred = time_validation(validate, batch, 100)
        base.setdefault("one", one)
        base.setdefault("hundred", hundred)
        rows.append((name, f"{one:.1f} µs ({base['one'] / one:.2f}×) / "
                           f"{hundred:.1f} µs ({base['hundred'] / hundred:.2f}×)",
                     f"{refused} of {len(BAD)}"))
    if "msgspec Struct" not in candidates:
        rows.append(("msgspec Struct", "not installed", ""))
    return rows


async def server_rate(command: list[str], port: int, seconds: float) -> tuple[float, float]:
    """Requests/s of 64 clients posting single messages, and server CPU µs per request."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        async with session(64) as http:
            for _ in range(600):  # readiness: /readyz answers (60 s at most)
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"{command} did not answer /readyz")
            cpu0 = _cpu(proc.pid)
            bodies = [orjson.dumps(sample(i)) for i in range(100)]
            headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
            result = await post_for(
                http, f"http://127.0.0.1:{port}/ingest/v1/values", seconds, 1.0, 64,
                lambda i: (bodies[i % 100], headers), expect=202)
            cpu = _cpu(proc.pid) - cpu0
        rate = result.items_per_second
        return rate, cpu / max(result.requests, 1) * 1e6
    finally:
        proc.terminate()
        proc.wait(30)


def _cpu(pid: int) -> float:
    total = 0
    for stat in (f"/proc/{pid}/stat", *[f"/proc/{p}/stat" for p in os.listdir("/proc")
                                         if p.isdigit()]):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()  # noqa: SIM115
        except OSError:
            continue
        if stat == f"/proc/{pid}/stat" or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def server_rows(seconds: float) -> list[tuple[str, str, str]]:
    rows = []
    port = free_port()
    uvicorn_cmd = [sys.executable, "-m", "bench.refapp", "--port", str(port)]
    ref, ref_cpu = await server_rate(uvicorn_cmd, port, seconds)
    rows.append(("FastAPI on uvicorn (hookstream's)", f"{ref:,.0f} req/s (1.00×)",
                 f"{ref_cpu:.0f} µs CPU/request"))
    if importlib.util.find_spec("granian"):
        port = free_port()
        granian_cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host",
                       "127.0.0.1", "--port", str(port), "--workers", "1", "--loop", "uvloop",
                       "--no-ws", "--log-level", "warning", "bench.refapp:create_app",
                       "--factory"]
        rate, cpu = await server_rate(granian_cmd, port, seconds)
        rows.append(("FastAPI on granian", f"{rate:,.0f} req/s ({rate / ref:.2f}×)",
                     f"{cpu:.0f} µs CPU/request"))
    else:
        rows.append(("FastAPI on granian", "not installed", ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per server (5)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    table = Table(title="validation: per message, one / a batch of 100 (× = speed-up)")
    for col in ("validator", "µs a message", "bad bodies refused"):
        table.add_column(col)
    for row in validation_rows():
        table.add_row(*row)
    Console().print(table)
    table = Table(title=f"HTTP server: parse-only ingest, 64 clients, {args.seconds:.0f} s")
    for col in ("server", "rate", "server CPU"):
        table.add_column(col)
    for row in asyncio.run(server_rows(args.seconds)):
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
