"""The layers of the package, read from the imports with ``ast``: no module imports upward.

The layers, lowest first (the package docstring of ``hookstream`` draws the same picture)::

    composition  cli, roles, plugins  what a command starts
    plug-ins     thermostat           mounted by the composition, found by entry point
    adapters     web, mqtt, tools     HTTP API and console, the MQTT bridge, dev tools
    services     services             what the API, console and CLI call
    pipeline     pipeline             ingest -> route -> queue -> deliver -> record
    storage      storage, security    the database; passwords, secret box, limits
    foundation   errors, models, kinds, ids, settings, logs, metrics, readiness, heap,
                 tracing

A module may import its own layer and those below it. Inside the pipeline the stages import
each other only along ``STAGES``; inside ``web`` the console and the API do not import each
other (both call the services). Imports under ``if TYPE_CHECKING:`` count like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "hookstream"

LAYERS: dict[str, int] = {
    "errors": 0, "models": 0, "kinds": 0, "ids": 0, "settings": 0, "logs": 0, "metrics": 0,
    "readiness": 0, "heap": 0, "tracing": 0,
    "storage": 1, "security": 1,
    "pipeline": 2,
    "services": 3,
    "web": 4, "mqtt": 4, "tools": 4,
    "thermostat": 5,
    "cli": 6, "roles": 6, "plugins": 6, "__main__": 6,
}
LAYER_NAMES = ("foundation", "storage", "pipeline", "services", "adapters", "plug-ins",
               "composition")

# What each stage of the pipeline may import from the others (it may always import its own).
STAGES: dict[str, set[str]] = {
    "message": set(),
    "route": {"message"},
    "queue": {"message"},
    "ingest": {"message", "route", "queue"},
    "deliver": {"message"},
    "record": {"message", "queue", "deliver"},
    "worker": {"message", "queue", "deliver", "record"},
}
# Parts of one layer that must not import each other.
APART: dict[str, set[frozenset[str]]] = {
    "web": {frozenset({"api", "console"})},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``hookstream`` import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from hookstream.pipeline import worker`` imports a module too.
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "hookstream"]


def exists(module: str) -> bool:
    path = SRC.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None when it may."""
    a, b = importer.split(".")[1:], imported.split(".")[1:]
    if not a or not b:  # the package itself (its docstring and version) is below everything
        return None
    layer_a, layer_b = LAYERS.get(a[0]), LAYERS.get(b[0])
    if layer_a is None:
        return f"{importer} is in no layer: add hookstream.{a[0]} to LAYERS"
    if layer_b is None:
        return f"{imported} is in no layer: add hookstream.{b[0]} to LAYERS"
    if layer_b > layer_a:
        return (f"{importer} ({LAYER_NAMES[layer_a]}) imports {imported} "
                f"({LAYER_NAMES[layer_b]}), a layer above it")
    if a[0] == b[0] == "pipeline" and len(a) > 1 and len(b) > 1:
        stage_a, stage_b = a[1], b[1]
        if stage_a != stage_b and stage_b not in STAGES.get(stage_a, set()):
            return f"pipeline stage {stage_a} imports {stage_b}: {importer} -> {imported}"
    if a[0] == b[0] and len(a) > 1 and len(b) > 1:
        for apart in APART.get(a[0], set()):
            if a[1] != b[1] and {a[1], b[1]} <= apart:
                return f"{a[0]}.{a[1]} and {a[0]}.{b[1]} do not import each other: {importer}"
    return None


def all_violations(root: Path = SRC) -> list[tuple[str, str, str]]:
    """(importer, imported, where and why) of every import that runs up a layer."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path)
        for line, imported in imports(path):
            if not exists(imported):  # a name imported from a module, not a module
                continue
            why = violation(importer, imported)
            if why:
                problems.append(
                    (importer, imported, f"{path.relative_to(SRC.parent)}:{line}: {why}"))
    return sorted(set(problems))


def test_no_module_imports_a_layer_above_it() -> None:
    problems = [where for _, _, where in all_violations()]
    assert not problems, "imports that run up a layer:\n" + "\n".join(problems)


def test_every_top_level_module_is_in_a_layer() -> None:
    names = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert names - set(LAYERS) == set(), "add these to LAYERS (and to the package docstring)"


@pytest.mark.parametrize(("importer", "imported"), [
    # The upward imports the layering issue found on main, each refused by the check.
    ("hookstream.pipeline.ingest.store", "hookstream.thermostat.changes"),
    ("hookstream.pipeline.ingest.store", "hookstream.web.api.common"),
    ("hookstream.pipeline.queue.claimer", "hookstream.pipeline.ingest.store"),
    ("hookstream.pipeline.deliver.client", "hookstream.pipeline.record.recorder"),
    ("hookstream.pipeline.deliver.attempt", "hookstream.pipeline.worker"),
    ("hookstream.web.console.connectors", "hookstream.web.api.connectors"),
    ("hookstream.web.api.logs", "hookstream.web.console.logs"),
    ("hookstream.services.connectors", "hookstream.web.api.schemas"),
    ("hookstream.pipeline.record.recorder", "hookstream.services.runtime"),
    ("hookstream.storage.repository", "hookstream.pipeline.message"),
    ("hookstream.web.app", "hookstream.thermostat.api.plants"),
    ("hookstream.settings", "hookstream.storage.database"),
])
def test_the_check_refuses_upward_imports(importer: str, imported: str) -> None:
    assert violation(importer, imported) is not None


@pytest.mark.parametrize(("importer", "imported"), [
    ("hookstream.pipeline.worker", "hookstream.pipeline.record.recorder"),
    ("hookstream.pipeline.ingest.store", "hookstream.pipeline.queue.enqueue"),
    ("hookstream.web.api.connectors", "hookstream.services.connectors"),
    ("hookstream.thermostat.api.plants", "hookstream.web.api.common"),
    ("hookstream.cli", "hookstream.tools.simulate"),
])
def test_the_check_lets_downward_imports_through(importer: str, imported: str) -> None:
    assert violation(importer, imported) is None


def test_the_check_reads_imports_from_source(tmp_path: Path) -> None:
    """A relative import and one under TYPE_CHECKING are found like absolute ones."""
    package = tmp_path / "hookstream" / "pipeline" / "deliver"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    source = package / "client.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "from ..record import recorder\n"
                      "if TYPE_CHECKING:\n    import hookstream.web.app\n")
    found = {name for _, name in _imports_under(source, tmp_path)}
    assert {"hookstream.pipeline.record", "hookstream.pipeline.record.recorder",
            "hookstream.web.app"} <= found


def _imports_under(path: Path, root: Path) -> list[tuple[int, str]]:
    global SRC
    saved, SRC = SRC, root / "hookstream"
    try:
        return imports(path)
    finally:
        SRC = saved
