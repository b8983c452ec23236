"""A fast subset of the fault drills (``make drills`` runs them all): SIGKILL of ``serve`` under
load on SQLite, and a receiver outage under load. Nothing answered 202 may be lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from drills.common import DrillResult, Options
from drills.receiver_outage import outage_drill
from drills.sigkill import serve_drill

# Smaller and faster than --quick: a shorter lease brings back what a killed process held.
OPTIONS = Options.quick_run(seed=1234, rate=60.0, lease_seconds=3.0, settle=0.5,
                            drain_timeout=45.0)


def check(result: DrillResult) -> None:
    print(f"\n{result.line()}")
    for note in result.notes:
        print(f"  note: {note}")
    assert result.error is None, result.error
    assert result.skipped is None, result.skipped
    assert result.accepted > 0, "the load got no 202 at all"
    assert result.lost == 0, f"{result.lost} accepted messages never arrived: {result.notes}"
    assert result.delivered == result.accepted


@pytest.mark.slow
async def test_sigkill_of_serve_under_load_loses_no_accepted_message(tmp_path: Path) -> None:
    result = await serve_drill(OPTIONS, tmp_path, kills=2)
    check(result)


@pytest.mark.slow
async def test_receiver_down_for_5_s_under_load_loses_nothing(tmp_path: Path) -> None:
    result = await outage_drill(OPTIONS, tmp_path, outage=5.0)
    check(result)
