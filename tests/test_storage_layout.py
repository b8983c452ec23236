"""The split of the SQL by concern: ``queries`` re-exports every statement of its modules, and
``Repository`` composes one mixin per concern over the base."""

from __future__ import annotations

import ast
import importlib
import pathlib
import types

from hookstream.storage import queries as q
from hookstream.storage.repository import Repository
from hookstream.storage.repository._base import _Base

CONCERNS = ["pipeline", "tenancy", "thermostat", "oauth", "retention", "_common"]


def _statements(module: types.ModuleType) -> set[str]:
    """The public names ``module`` defines at its top level (not the ones it imports)."""
    assert module.__file__ is not None
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Assign):
            found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
    return {name for name in found if not name.startswith("_")}


def test_every_statement_is_re_exported_once() -> None:
    seen: dict[str, str] = {}
    for concern in CONCERNS:
        module = importlib.import_module(f"hookstream.storage.queries.{concern}")
        for name in _statements(module):
            assert name not in seen, f"{name} in both {seen[name]} and {concern}"
            seen[name] = concern
            assert getattr(q, name) is getattr(module, name)
    exported = {n for n, v in vars(q).items()
                if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert exported == set(seen)
    assert len(seen) == 147


def test_repository_composes_the_concern_mixins() -> None:
    names = [c.__name__ for c in Repository.__mro__]
    assert names[:7] == [
        "Repository", "PipelineQueries", "TenancyQueries", "ThermostatQueries",
        "OAuthQueries", "RetentionQueries", "_Base",
    ]
    assert issubclass(Repository, _Base)
    methods = [m for m in dir(Repository) if not m.startswith("__")]
    assert len(methods) == 150
    # each method lives in exactly one class of the MRO
    for m in methods:
        owners = [c for c in Repository.__mro__ if m in vars(c)]
        assert len(owners) == 1, (m, owners)
