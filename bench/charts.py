"""Charts of a run (matplotlib, the ``bench`` extra): bench/results/{benchmark}.png, one bar
chart of ratios per benchmark, and latency.png, the latency percentiles.

``python -m bench.charts [FILE]`` draws them again from a results file (default latest.json).
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from bench.common import RESULTS
from bench.targets import ratio_target, verdict

TITLES = {
    "drain": "Drain: hookstream deliveries/s ÷ bare aiohttp requests/s",
    "ingest": "HTTP ingest: hookstream messages/s ÷ FastAPI parse-only app",
    "fanout": "Fan-out: deliveries/s ÷ bare aiohttp requests/s",
    "isolation": "Isolation: healthy deliveries/s with a hanging connector ÷ without",
    "backlog": "Large backlog ÷ the drain of the same run (rate; worker's peak RSS)",
    "mqtt": "MQTT ingest: messages stored/s ÷ Mosquitto to a plain subscriber",
}


def _number(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:,.0f}/s"


def _subtitle(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    pg = doc.get("postgresql", {}).get("server_version")
    return (f"{doc['startedAt']} ({doc['mode']}): {m['cpu']}, {m['cores']} cores, Python "
            f"{m['python']}, SQLite {m['sqlite']}" + (f", PostgreSQL {pg.split()[0]}" if pg
                                                         else ""))


def draw(doc: dict[str, Any], folder: Path = RESULTS) -> list[Path] | str:
    """The PNGs written, or why none were (matplotlib missing)."""
    try:
        import matplotlib
    except ImportError:
        return ("matplotlib is not installed: charts skipped "
                "(.venv/bin/pip install -e '.[bench]', or make bench)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fig in doc["figures"]:
        groups[fig["benchmark"]].append(fig)
    for bench, figs in groups.items():
        if bench == "latency":
            continue
        rows = [f for f in figs if f["ratio"] is not None and not math.isnan(f["ratio"])]
        if not rows:
            continue
        height = 1.4 + 0.6 * len(rows)
        chart, ax = plt.subplots(figsize=(12, height))
        labels = [f"{f['name']} ({f['database']})"
                  + ("" if f["higherIsBetter"] else ", lower is better") for f in rows]
        ratios = [f["ratio"] for f in rows]
        colours = ["#4c9a2a" if (r >= 1 if f["higherIsBetter"] else r <= 1) else "#d08c24"
                   for r, f in zip(ratios, rows, strict=True)]
        y = list(range(len(rows)))[::-1]
        ax.barh(y, ratios, color=colours, height=0.6)
        ax.set_yticks(y, labels, fontsize=8)
        ax.axvline(1.0, color="#444", linewidth=0.8)
        top = max([*ratios, 1.0])
        for yy, f in zip(y, rows, strict=True):
            target = ratio_target(bench, f["database"], f["name"])
            if target is not None:
                ax.plot([target, target], [yy - 0.4, yy + 0.4], color="#b00", linewidth=2)
            text = (f" {f['ratio']:.2f}×  ({_number(f['value'], f['unit'])} vs "
                    f"{_number(f['reference'], f['referenceUnit'])})")
            v = verdict(f)
            if v is not None:
                text += f"\n target {v.target}: {v.mark}"
            ax.text(f["ratio"], yy, text, va="center", fontsize=7)
        ax.set_xlim(0, top * 1.8)
        ax.set_xlabel("ratio to the reference measured in the same run (red mark: target)")
        ax.set_title(f"{TITLES.get(bench, bench)}\n{_subtitle(doc)}", fontsize=9)
        chart.tight_layout()
        path = folder / f"{bench}.png"
        chart.savefig(path, dpi=110)
        plt.close(chart)
        written.append(path)
    latency = _latency(doc, plt, folder)
    if latency is not None:
        written.append(latency)
    return written


def _latency(doc: dict[str, Any], plt: Any, folder: Path) -> Path | None:
    """Grouped bars: p50/p95/p99 of hookstream and of the reference, per database and rate."""
    series: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for fig in doc["figures"]:
        if fig["benchmark"] != "latency":
            continue
        q, _, rest = fig["name"].removeprefix("latency ").partition(", ")
        series[f"{fig['database']}, {rest}"][q] = (fig["value"], fig["reference"])
    if not series:
        return None
    qs = ("p50", "p95", "p99")
    chart, ax = plt.subplots(figsize=(10, 5.5))
    width = 0.8 / (2 * len(series))
    for k, (label, values) in enumerate(series.items()):
        for j, who in enumerate(("hookstream", "reference")):
            xs = [i + (2 * k + j) * width - 0.4 + width / 2 for i in range(len(qs))]
            ys = [max(values.get(q, (0.0, 0.0))[j], 0.01) for q in qs]
            ax.bar(xs, ys, width, label=f"{who}: {label}", alpha=1.0 if j == 0 else 0.45)
            for x, v in zip(xs, ys, strict=True):
                ax.text(x, v, f"{v:,.1f}", ha="center", va="bottom", fontsize=6)
    ax.set_yscale("log")
    ax.set_xticks(range(len(qs)), qs)
    ax.set_ylabel("ms from the ingest request to the receiver (log)")
    ax.axhline(5, color="#b00", linestyle="--", linewidth=0.8, label="target p50 ≤ 5 ms")
    ax.axhline(25, color="#b00", linestyle=":", linewidth=0.8, label="target p99 ≤ 25 ms")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    ax.set_title(f"Latency at a fixed offered load\n{_subtitle(doc)}", fontsize=9)
    chart.tight_layout()
    path = folder / "latency.png"
    chart.savefig(path, dpi=110)
    plt.close(chart)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else RESULTS / "latest.json"
    result = draw(orjson.loads(source.read_bytes()))
    if isinstance(result, str):
        print(result)
        return 1
    for path in result:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
