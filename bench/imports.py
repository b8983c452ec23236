"""``python -m bench.imports``: what each role imports before it is ready, and how long it takes.

Each role (``api``, ``worker``, ``mqtt``) is started for real under ``python -X importtime``
on a migrated SQLite database until it logs "hookstream ready", then stopped. Printed per role
(medians of ``--runs``): the import time of every module loaded before that line, the time from
start to ready, and both as ratios to the ``api`` role measured in the same run. The ``mqtt``
role needs a broker that takes anonymous clients (``--mqtt-url``, default Debian's Mosquitto on
127.0.0.1:1883); without one it is skipped, and said so.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from bench.common import Options, Workspace, free_port

READY = "hookstream ready:"
# "import time: self | cumulative | name", the name indented by two spaces a level.
_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)")


@dataclass
class Run:
    import_ms: float
    modules: int
    ready_s: float


def _imports(log: str) -> tuple[float, int]:
    """Milliseconds and module count of the imports logged before the readiness line."""
    total, count = 0, 0
    for line in log.split(READY, 1)[0].splitlines():
        match = _LINE.match(line)
        if match:
            count += 1
            if not match.group(2):  # top level: its cumulative time holds its children's
                total += int(match.group(1))
    return total / 1000, count


def _broker_up(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), 2):
            return True
    except OSError:
        return False


def run_role(ws: Workspace, role: str, database_url: str, n: int, mqtt_url: str) -> Run:
    env = {"PYTHONPROFILEIMPORTTIME": "1", "HOOKSTREAM_MQTT_URL": mqtt_url,
           "HOOKSTREAM_MQTT_CLIENT_ID": f"bench-imports-{n}-{time.time_ns()}",
           "HOOKSTREAM_MQTT_SESSION_EXPIRY_SECONDS": "60"}
    listen = f"127.0.0.1:{free_port()}" if role == "api" else None
    started = time.monotonic()
    proc = ws.hookstream(role, database_url, listen=listen, name=f"{role}-{n}", env=env)
    try:
        deadline = started + 120
        while True:
            proc.check()
            text = proc.log.read_text(errors="replace")
            if READY in text:
                ready_s = time.monotonic() - started
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{role} not ready in 120 s:\n{proc.tail()}")
            time.sleep(0.02)  # poll interval
    finally:
        ws.stop(proc)
    ms, count = _imports(text)
    return Run(ms, count, ready_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.imports",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts per role (default 5)")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args(argv)
    ws = Workspace(Options())
    console = Console()
    try:
        database_url = f"sqlite:///{ws.dir / 'imports.db'}"
        ws.migrate(database_url)
        roles = ["api", "worker"]
        if _broker_up(args.mqtt_url):
            roles.append("mqtt")
        else:
            console.print(f"mqtt skipped: no broker at {args.mqtt_url}")
        runs: dict[str, list[Run]] = {r: [] for r in roles}
        for n in range(args.runs):  # interleaved, so a busy moment hits every role alike
            for role in roles:
                runs[role].append(run_role(ws, role, database_url, n, args.mqtt_url))
        medians = {
            role: Run(statistics.median(r.import_ms for r in rs),
                      int(statistics.median(r.modules for r in rs)),
                      statistics.median(r.ready_s for r in rs))
            for role, rs in runs.items()
        }
        ref = medians["api"]
        table = Table(title=f"Imports before 'hookstream ready' (median of {args.runs})")
        for column in ("role", "modules", "import ms", "× api", "start to ready s", "× api"):
            table.add_column(column, justify="left" if column == "role" else "right")
        for role, m in medians.items():
            table.add_row(role, str(m.modules), f"{m.import_ms:.0f}",
                          f"{m.import_ms / ref.import_ms:.2f}", f"{m.ready_s:.2f}",
                          f"{m.ready_s / ref.ready_s:.2f}")
        console.print(table)
    finally:
        ws.close()


if __name__ == "__main__":
    main(sys.argv[1:])
