"""Where a process's time went: py-spy recordings and a summary of their collapsed stacks.

``python -m bench.profile FILE`` prints the summary of a recorded profile.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, Proc, Workspace

PROFILE_RATE = 100  # samples per second

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_SITE = re.compile(r".*/(?:site|dist)-packages/")
_STDLIB = re.compile(r".*/lib/python3\.\d+/")


def _frame(text: str) -> tuple[str, str]:
    """(function, file) of one frame, the file shortened to a module path."""
    m = _FRAME.match(text)
    if m is None:
        return text, ""
    path = m["file"]
    if _SITE.match(path):
        path = _SITE.sub("", path)
    elif _STDLIB.match(path):
        path = "stdlib/" + _STDLIB.sub("", path)
    path = path.removeprefix("src/")
    return m["func"], path


def package(path: str) -> str:
    """The group a file's time counts towards: hookstream's subpackages, else the package."""
    parts = path.split("/")
    if not path:
        return "(native or unknown)"
    if parts[0] == "hookstream" and len(parts) > 2:
        return "hookstream." + parts[1]
    if parts[0] == "stdlib" and len(parts) > 1:
        return "stdlib." + parts[1].removesuffix(".py")
    return parts[0].removesuffix(".py")


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """Total samples, and the functions and packages with the most self and total time."""
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame(f) for f in stack.split(";")
            if not f.startswith(("process ", "thread ")) and f
        ]
        if not frames:
            continue
        samples += count
        func, file = frames[-1]
        self_time[f"{func} ({file})"] += count
        by_package[package(file)] += count
        for name in {f"{fn} ({fl})" for fn, fl in frames}:
            total_time[name] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": name, "percent": round(100 * n / samples, 1)}
                for name, n in counter.most_common(top)]

    return {
        "samples": samples,
        "selfTop": share(self_time) if samples else [],
        "totalTop": share(total_time) if samples else [],
        "packagesSelf": share(by_package) if samples else [],
    }


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(ws: Workspace, procs: list[Proc], label: str, enabled: bool,
             into: dict[str, Any]) -> Iterator[None]:
    """py-spy record on ``procs`` while inside: raw collapsed stacks of the samples taken
    while a thread holds the GIL (Python-level CPU; SQLite's C work and waits run without
    it). py-spy's idle detection is unreliable here (threads waiting on locks count as busy),
    hence ``--gil``. A summary goes into ``into["profile"]``; ``gilBusy`` is the share of
    sample ticks at which some thread held the GIL."""
    tool = py_spy() if enabled else None
    if tool is None:
        yield
        return
    recorders: list[tuple[Proc, subprocess.Popen[bytes], Path]] = []
    for proc in procs:
        out = RESULTS / f"profile-{label}-{proc.name}.txt"
        with (ws.dir / f"py-spy-{proc.name}.log").open("ab") as log:
            rec = subprocess.Popen(
                [tool, "record", "--pid", str(proc.pid), "--rate", str(PROFILE_RATE), "--gil",
                 "--format", "raw", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=log,
            )
        recorders.append((proc, rec, out))
    started = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - started
        profiles: dict[str, Any] = {}
        for proc, rec, out in recorders:
            rec.send_signal(signal.SIGINT)
            try:
                rec.wait(30)
            except subprocess.TimeoutExpired:
                rec.kill()
                rec.wait(5)
            if out.exists():
                summary = summarise(out)
                profiles[proc.name] = {
                    "file": str(out.relative_to(ROOT)), "seconds": round(seconds, 2),
                    "gilBusy": round(summary["samples"] / (PROFILE_RATE * seconds), 3),
                    **summary,
                }
        into["profile"] = profiles


def main(argv: list[str]) -> None:
    for name in argv:
        summary = summarise(Path(name))
        print(f"{name}: {summary['samples']} samples")
        for title, key in (("self time by package", "packagesSelf"),
                           ("self time by function", "selfTop"),
                           ("total time by function", "totalTop")):
            print(f"  {title}:")
            for row in summary[key]:
                print(f"    {row['percent']:5.1f}%  {row['name']}")


if __name__ == "__main__":
    main(sys.argv[1:])
