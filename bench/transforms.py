"""``python -m bench.transforms``: the JSONata implementations for Python, side by side.

How hookstream chose the one behind ``hookstream.pipeline.deliver.transform``: for each
candidate that imports in this interpreter, the time to compile three realistic expressions,
and the time to apply each to a message as a worker does (the stored body's bytes in, the
JSON bytes to send out: decoding and encoding included, through the candidate's fastest path
for that), after checking every result against the expected one. Then whether the candidate's
own time limit stops two runaway expressions (exponential recursion, a backtracking regular
expression) near the limit.

The candidates cannot all share one interpreter (``jsonata-python`` and ``jsonata-rs`` both
install a ``jsonata`` package), so run it once per scratch venv::

    python3 -m venv /tmp/a && /tmp/a/bin/pip install orjson rich jsonata-python jsonatapy \\
        jlens zopyx-pyjsonata jsonata2py
    python3 -m venv /tmp/b && /tmp/b/bin/pip install orjson rich jsonata-rs
    PYTHONPATH=. /tmp/a/bin/python -m bench.transforms
    PYTHONPATH=. /tmp/b/bin/python -m bench.transforms

In the project's venv it measures the one hookstream ships.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

# A value message as hookstream delivers it (the 15 fields, in order).
MESSAGE: dict[str, Any] = {
    "deviceId": "boiler-1", "property": "temperature", "timestamp": 1767225600000,
    "payload": 642, "receivedAt": 1767225600120, "scaledPayload": 64.2,
    "name": "Boiler 1", "unit": "°C", "externalId": "BLR-1",
    "propertyId": "prop-boiler-1-temperature", "equipmentId": "eq-boiler-1",
    "gatewayInterfaceId": "gwi-tower-1", "slug": "temperature", "isOutOfService": False,
    "tags": {"site": "north", "floor": "2"},
}
BATCH = [
    {**MESSAGE, "deviceId": f"boiler-{i % 5}", "scaledPayload": 60.0 + i, "payload": 600 + i * 10,
     "timestamp": MESSAGE["timestamp"] + i * 1000}
    for i in range(50)
]


@dataclass(frozen=True)
class Case:
    name: str
    expression: str
    data: Any
    expected: Any


CASES = (
    # ThingsBoard's telemetry upload shape: a reshape with a computed key.
    Case("reshape", '{"ts": timestamp, "values": {slug: scaledPayload}, '
                    '"device": deviceId, "site": tags.site}',
         MESSAGE, {"ts": 1767225600000, "values": {"temperature": 64.2}, "device": "boiler-1",
                   "site": "north"}),
    # Functions: a unit conversion, rounding, a string built, a condition.
    Case("compute", '{"id": $uppercase(deviceId) & "/" & slug, '
                    '"fahrenheit": $round(scaledPayload * 9 / 5 + 32, 1), '
                    '"alarm": scaledPayload > 60 ? "hot" : "ok", '
                    '"tags": $keys(tags)}',
         MESSAGE, {"id": "BOILER-1/temperature", "fahrenheit": 147.6, "alarm": "hot",
                   "tags": ["site", "floor"]}),
    # A batch of 50: an aggregate per device.
    Case("batch50", '{"count": $count($), "max": $max($.scaledPayload), '
                    '"devices": $distinct($.deviceId)}',
         BATCH, {"count": 50, "max": 109.0,
                 "devices": ["boiler-0", "boiler-1", "boiler-2", "boiler-3", "boiler-4"]}),
)

RUNAWAY = (
    ("recursion", '($f := function($n) { $n = 0 ? 0 : $f($n - 1) + $f($n - 1) }; $f(30))',
     MESSAGE),
    ("regex", '$match(name, /(a+)+b/)', {**MESSAGE, "name": "a" * 28 + "c"}),
)
LIMIT_MS = 50


@dataclass
class Candidate:
    """A library's compile, its bytes -> bytes apply, and its time limit (None: none)."""

    name: str
    version: str
    compile: Callable[[str], Any]
    apply: Callable[[Any, bytes], bytes]
    bounded: Callable[[Any, bytes, int], bytes] | None


def _version(dist: str) -> str:
    from importlib.metadata import version
    return version(dist)


def _jsonata_python() -> Candidate:
    import jsonata  # type: ignore[import-not-found]

    if not hasattr(jsonata, "Jsonata") or not hasattr(jsonata.Jsonata, "evaluate_path"):
        raise ImportError("the jsonata package here is not jsonata-python")

    def bounded(expr: Any, body: bytes, ms: int) -> bytes:
        frame = expr.create_frame()
        frame.set_runtime_bounds(ms, 1000)
        return orjson.dumps(expr.evaluate(orjson.loads(body), frame))

    return Candidate("jsonata-python", _version("jsonata-python"), jsonata.Jsonata,
                     lambda e, b: orjson.dumps(e.evaluate(orjson.loads(b))), bounded)


def _jsonata_rs() -> Candidate:
    import jsonata

    if not hasattr(jsonata, "JsonataError"):
        raise ImportError("the jsonata package here is not jsonata-rs")

    def bounded(expr: Any, body: bytes, ms: int) -> bytes:
        expr.set_runtime_bounds(ms, 1000)
        return orjson.dumps(expr.evaluate(orjson.loads(body)))

    return Candidate("jsonata-rs", _version("jsonata-rs"), jsonata.Jsonata,
                     lambda e, b: orjson.dumps(e.evaluate(orjson.loads(b))), bounded)


def _jsonatapy() -> Candidate:
    import jsonatapy  # type: ignore[import-not-found]

    def apply(expr: Any, body: bytes) -> bytes:
        return expr.evaluate_json(body.decode()).encode()  # type: ignore[no-any-return]

    def bounded(expr: Any, body: bytes, ms: int) -> bytes:
        return expr.evaluate_json(body.decode(), timeout=ms).encode()  # type: ignore[no-any-return]

    return Candidate("jsonatapy", _version("jsonatapy"), jsonatapy.compile, apply, bounded)


def _jlens() -> Candidate:
    import jlens  # type: ignore[import-not-found]

    def apply(expr: Any, body: bytes) -> bytes:
        return expr.evaluate_json(body.decode()).encode()  # type: ignore[no-any-return]

    def bounded(expr: Any, body: bytes, ms: int) -> bytes:
        return expr.evaluate_json(body.decode(), timeout=ms / 1000).encode()  # type: ignore[no-any-return]

    return Candidate("jlens", _version("jlens"), jlens.Expression, apply, bounded)


def _zopyx() -> Candidate:
    from zopyx import pyjsonata  # type: ignore[import-not-found]

    def bounded(expr: Any, body: bytes, ms: int) -> bytes:
        return orjson.dumps(expr.evaluate(orjson.loads(body), None, 1000, ms))

    return Candidate("zopyx-pyjsonata", _version("zopyx-pyjsonata"), pyjsonata.Jsonata,
                     lambda e, b: orjson.dumps(e.evaluate(orjson.loads(b))), bounded)


def _jsonata2py() -> Candidate:
    import jsonata2py  # type: ignore[import-not-found]

    return Candidate("jsonata2py", _version("jsonata2py"), jsonata2py.compile,
                     lambda e, b: orjson.dumps(e.evaluate(orjson.loads(b))), None)


LOADERS = (_jsonata_python, _jsonata_rs, _jsonatapy, _jlens, _zopyx, _jsonata2py)


def _same(a: Any, b: Any) -> bool:
    # JSON equality: 147.6 == 147.6, and 50 == 50.0 (JSONata numbers are doubles).
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(a - b) < 1e-9
    return bool(a == b)


def _per_call_us(fn: Callable[[], object], budget_s: float) -> float:
    """The median of five rounds' microseconds per call, each round about budget_s / 5."""
    fn()
    n, started = 1, time.perf_counter()
    while time.perf_counter() - started < 0.02:
        fn()
        n += 1
    per = (time.perf_counter() - started) / n
    count = max(1, int(budget_s / 5 / per))
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(count):
            fn()
        rounds.append((time.perf_counter() - t0) / count * 1e6)
    return statistics.median(rounds)


def _runaway_child(load: Callable[[], Candidate], expression: str, data: Any,
                  conn: Any) -> None:
    c = load()
    expr = c.compile(expression)
    body = orjson.dumps(data)
    t0 = time.perf_counter()
    try:
        c.bounded(expr, body, LIMIT_MS)  # type: ignore[misc]
        what = "finished"
    except Exception as exc:  # noqa: BLE001 - any library's error is an answer here
        what = f"stopped ({type(exc).__name__})"
    conn.send(f"{what} in {(time.perf_counter() - t0) * 1000:.0f} ms")


def _runaway_ms(load: Callable[[], Candidate], c: Candidate, expression: str, data: Any) -> str:
    """How the candidate's own limit stops a runaway expression: 'stopped in N ms' or why not.

    In a child process (killed at 5 s): some libraries' expressions may not leave the thread
    that compiled them, and one that never returns must not hold the benchmark."""
    if c.bounded is None:
        return "no time limit"
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_runaway_child, args=(load, expression, data, theirs))
    child.start()
    answer = ours.recv() if ours.poll(5.0) else "still running after 5 s"
    child.kill()
    child.join()
    return str(answer)


def measure(load: Callable[[], Candidate], c: Candidate, budget_s: float) -> dict[str, Any]:
    row: dict[str, Any] = {"name": c.name, "version": c.version, "correct": True, "cases": {}}
    for case in CASES:
        body = orjson.dumps(case.data)
        try:
            expr = c.compile(case.expression)
            got = orjson.loads(c.apply(expr, body))
        except Exception as exc:  # noqa: BLE001 - a failing candidate is reported, not fatal
            row["correct"] = False
            row["cases"][case.name] = {"error": f"{type(exc).__name__}: {exc}"[:120]}
            continue
        if not _same(got, case.expected):
            row["correct"] = False
            row["cases"][case.name] = {"wrong": orjson.dumps(got).decode()[:120]}
            continue
        row["cases"][case.name] = {
            "compileUs": _per_call_us(lambda e=case.expression: c.compile(e), budget_s / 2),
            "applyUs": _per_call_us(lambda x=expr, b=body: c.apply(x, b), budget_s),
        }
    row["runaway"] = {name: _runaway_ms(load, c, e, d) for name, e, d in RUNAWAY}
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transforms",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="time spent measuring each figure (default 1)")
    args = parser.parse_args(argv)
    rows, missing = [], []
    for load in LOADERS:
        try:
            candidate = load()
        except ImportError as exc:
            missing.append(f"{load.__name__.strip('_')}: {exc}")
            continue
        rows.append(measure(load, candidate, args.seconds))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="JSONata: microseconds per call (bytes in, JSON bytes out)")
    table.add_column("library")
    for case in CASES:
        table.add_column(f"{case.name} compile", justify="right")
        table.add_column(f"{case.name} apply", justify="right")
    for name, _, _ in RUNAWAY:
        table.add_column(f"{name} @{LIMIT_MS} ms")
    for row in rows:
        cells = [f"{row['name']} {row['version']}"]
        for case in CASES:
            got = row["cases"][case.name]
            if "compileUs" in got:
                cells += [f"{got['compileUs']:.1f}", f"{got['applyUs']:.1f}"]
            else:
                cells += ["wrong" if "wrong" in got else "error", got.get("wrong")
                          or got.get("error", "")]
        cells += [row["runaway"][name] for name, _, _ in RUNAWAY]
        table.add_row(*cells)
    Console(width=200).print(table)
    for line in missing:
        print(f"not installed here: {line}")
    print(orjson.dumps(rows).decode())


if __name__ == "__main__":
    main()
