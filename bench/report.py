"""``python -m bench.report [FILE]``: a results file (default bench/results/latest.json) as the
Markdown table of README's "Benchmarks" section, with the machine line and the targets."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.common import RESULTS, Options
from bench.targets import verdict

ALL = Options().only


def _number(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "ms":
        return f"{value:,.1f} ms"
    return f"{value:,.0f} {unit}"


def _what(fig: dict[str, Any]) -> str:
    """The reference's name without the unit it ends with (the number carries it)."""
    name, _, unit = str(fig["referenceName"]).rpartition(", ")
    return name if name and unit == fig["referenceUnit"] else str(fig["referenceName"])


def machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    pg = doc.get("postgresql", {}).get("server_version")
    load = m.get("loadAverageAtStart", [None])[0]
    only = doc.get("options", {}).get("only") or []
    subset = f", only {', '.join(only)}" if only and len(only) < len(ALL) else ""
    return (f"{doc['startedAt']}, {doc['mode']} run{subset}, {doc['durationSeconds']:.0f} s: "
            f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, SQLite {m['sqlite']}"
            + (f", PostgreSQL {pg.split()[0]}" if pg else "")
            + (f"; load average at start {load:.2f}" if load is not None else "")
            + f"; hookstream {str(m.get('hookstreamCommit') or '?')[:7]}"
            + (" with uncommitted changes in src/" if m.get("srcDirty") else ""))


def table(doc: dict[str, Any]) -> str:
    rows = ["| figure | db | hookstream | reference | ratio | target |",
            "| --- | --- | ---: | ---: | ---: | --- |"]
    for fig in doc["figures"]:
        v = verdict(fig)
        ratio = fig["ratio"]
        rows.append(
            f"| {fig['name']} | {fig['database']} | {_number(fig['value'], fig['unit'])} | "
            f"{_number(fig['reference'], fig['referenceUnit'])} ({_what(fig)}) | "
            + ("–" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}×") + " | "
            + ("" if v is None else f"{v.target}: **{v.mark}**") + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    doc = orjson.loads((Path(args[0]) if args else RESULTS / "latest.json").read_bytes())
    print(machine_line(doc))
    print()
    print(table(doc))
    for skipped in doc.get("skipped", []):
        print(f"\n{skipped['benchmark']} skipped: {skipped['reason']}")
    for err in doc.get("errors", []):
        print(f"\n{err['benchmark']} failed: {err['error'].splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
