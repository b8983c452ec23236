"""One owner for "enqueue a delivery": only ``pipeline.queue.enqueue`` creates deliveries.

Every module under src/hookstream is read with ``ast`` (nothing is imported to look). A module
creates deliveries when it

- names the repository's ``insert_deliveries`` or ``insert_queued`` (a call, a reference, an
  import),
- builds an insert on the ``deliveries`` or ``queue`` table (``insert(deliveries)``,
  ``deliveries.insert()``) or holds SQL text ``INSERT INTO deliveries`` (or ``queue``), or
- writes a delivery row: a dict (literal or ``dict(...)``) holding every column an insert of a
  delivery must set that no message row has (read from the table, so the test follows it).

The storage layer defines the statement and the method; the enqueue module is the only user.
The test also checks that the detector sees the enqueue module's own row and insert, so it
cannot go blind without failing.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

from hookstream.kinds import KINDS
from hookstream.models import GATEWAY_KINDS, DeliveryStatus, Kind
from hookstream.pipeline.deliver.retry import Verdict
from hookstream.pipeline.queue.enqueue import due_count, plan_delivery, queued, wake
from hookstream.pipeline.queue.wakeup import Wakeup
from hookstream.pipeline.record.replay import STATUSES
from hookstream.storage.tables import QUEUE_HELD, deliveries, messages
from hookstream.web.api.logs import Status

SRC = Path(__file__).resolve().parent.parent / "src" / "hookstream"
ENQUEUE = "pipeline/queue/enqueue.py"
# The statement (``insert_deliveries = insert(deliveries)``) and the repository method
# (``def insert_deliveries`` running ``q.insert_deliveries``) are defined once, not used.
STORAGE: dict[str, Counter[str]] = {
    "storage/queries/pipeline.py": Counter({"insert_deliveries": 1, "insert(deliveries)": 1,
                                            "insert_queued": 1, "insert(queue)": 1}),
    # the re-exports
    "storage/queries/__init__.py": Counter({"insert_deliveries": 1, "insert_queued": 1}),
    "storage/repository/pipeline.py": Counter({"insert_deliveries": 2, "insert_queued": 2}),
}

# Columns a delivery insert must set (NOT NULL, no server default) that a message row lacks.
ROW_KEYS = frozenset(
    c.name for c in deliveries.columns
    if not c.nullable and c.server_default is None and c.name not in messages.columns
)
INSERT_SQL = re.compile(r"\binsert\s+into\s+\"?(deliveries|queue)\b", re.IGNORECASE)
TABLES = ("deliveries", "queue")


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _dict_keys(node: ast.AST) -> set[str] | None:
    if isinstance(node, ast.Dict):
        return {
            k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)
        }
    if isinstance(node, ast.Call) and _name(node.func) == "dict":
        return {k.arg for k in node.keywords if k.arg is not None}
    return None


def creates_deliveries(tree: ast.AST) -> list[tuple[int, str]]:
    """What in ``tree`` creates deliveries: (line, what)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        names = []
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names += [a.name.rsplit(".", 1)[-1] for a in node.names]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        found += [(line, n) for n in names if n in ("insert_deliveries", "insert_queued")]
        if isinstance(node, ast.Call):
            callee = _name(node.func)
            for a in node.args:
                if callee == "insert" and _name(a) in TABLES:
                    found.append((line, f"insert({_name(a)})"))
            if (isinstance(node.func, ast.Attribute) and node.func.attr == "insert"
                    and _name(node.func.value) in TABLES):
                found.append((line, f"{_name(node.func.value)}.insert()"))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(line, f"INSERT INTO {m[1]}") for m in INSERT_SQL.finditer(node.value)]
        keys = _dict_keys(node)
        if keys is not None and ROW_KEYS <= keys:
            found.append((line, "a delivery row"))
    return found


def _modules() -> dict[str, ast.AST]:
    return {
        p.relative_to(SRC).as_posix(): ast.parse(p.read_text(), str(p))
        for p in sorted(SRC.rglob("*.py")) if "migrations" not in p.parts
    }


def test_the_row_criterion_is_the_delivery_columns() -> None:
    assert {"message_id", "connector_id", "status", "next_attempt_at"} <= ROW_KEYS
    assert not ROW_KEYS & set(messages.columns.keys())


def test_only_the_enqueue_module_creates_deliveries() -> None:
    modules = _modules()
    assert ENQUEUE in modules and len(modules) > 50
    offenders = {}
    for path, tree in modules.items():
        if path == ENQUEUE:
            continue
        hits = creates_deliveries(tree)
        if Counter(what for _, what in hits) - STORAGE.get(path, Counter()):
            offenders[path] = hits
    assert offenders == {}, (
        "only hookstream.pipeline.queue.enqueue creates deliveries (plan_delivery, enqueue); "
        f"found elsewhere: {offenders}"
    )


def test_the_detector_sees_the_enqueue_module() -> None:
    """The enqueue module builds the row and calls the insert: both must be seen."""
    hits = {what for _, what in creates_deliveries(_modules()[ENQUEUE])}
    assert {"insert_deliveries", "insert_queued", "a delivery row"} <= hits, hits


@pytest.mark.parametrize("source", [
    "async def f(repo):\n    await repo.insert_deliveries([])\n",
    "from hookstream.storage.queries import insert_deliveries\n",
    "from sqlalchemy import insert\nfrom hookstream.storage.tables import deliveries\n"
    "stmt = insert(deliveries)\n",
    "from hookstream.storage import tables\nstmt = tables.deliveries.insert()\n",
    "SQL = 'INSERT INTO deliveries (id) VALUES (1)'\n",
    "async def f(repo):\n    await repo.insert_queued([])\n",
    "from sqlalchemy import insert\nfrom hookstream.storage.tables import queue\n"
    "stmt = insert(queue)\n",
    "SQL = 'insert into queue (delivery_id) values (1)'\n",
    "row = {'id': 'd', 'org_id': 'o', 'message_id': 'm', 'connector_id': 'c', 'kind': 'k',\n"
    "       'device_id': '', 'status': 'pending', 'attempts': 0, 'next_attempt_at': 1,\n"
    "       'created_at': 1, 'updated_at': 1}\n",
    "row = dict(message_id='m', connector_id='c', status='held', next_attempt_at=1,\n"
    "           created_at=1, updated_at=1)\n",
])
def test_the_detector_catches_each_way(source: str) -> None:
    assert creates_deliveries(ast.parse(source))


def test_statuses_and_kinds_are_the_enums() -> None:
    assert STATUSES == tuple(DeliveryStatus)
    assert Status.__args__ == tuple(DeliveryStatus)  # type: ignore[attr-defined]
    assert {v.value for v in Verdict} - {"retry"} <= set(DeliveryStatus)
    assert KINDS == GATEWAY_KINDS
    assert {"alert", "thermostat"} <= set(Kind)


def test_plan_delivery_is_pending_or_held() -> None:
    common = {"org_id": "o", "message_id": "m", "connector_id": "c", "kind": "values",
              "device_id": "d", "now": 1_700_000_000_000}
    row = plan_delivery(**common)  # type: ignore[arg-type]
    assert row["status"] == DeliveryStatus.PENDING and type(row["status"]) is str
    assert row["attempts"] == 0 and row["next_attempt_at"] == row["created_at"] == common["now"]
    assert row["id"].startswith("dlv_") and "replay_of" not in row
    held = plan_delivery(**common, active=False, replay_of="dlv_x")  # type: ignore[arg-type]
    assert held["status"] == DeliveryStatus.HELD and held["replay_of"] == "dlv_x"
    assert due_count([row, held]) == 1
    # Its queue row: due at once, or never while held.
    assert queued(row)["due_at"] == common["now"] and queued(row)["delivery_id"] == row["id"]
    assert queued(held)["due_at"] == QUEUE_HELD


async def test_wake_only_when_something_is_due() -> None:
    wakeup = Wakeup()
    wake(wakeup, 0)
    assert not wakeup._event.is_set()
    wake(None, 3)
    wake(wakeup, 1)
    assert wakeup._event.is_set()
