"""Plug-ins: packages that add to hookstream without the pipeline or the API knowing them.

A plug-in is found by its entry point in the group ``hookstream.plugins`` (the thermostat
cloud declares ``thermostat = "hookstream.thermostat.plugin:plugin"`` in pyproject.toml) and
gives a ``Plugin``: hooks that run in the intake's transaction, and a function that mounts
its routes (API and console) on the web application. ``HOOKSTREAM_PLUGINS`` (a comma-separated
list of names, empty for none) chooses which are loaded; by default every installed one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from hookstream.errors import ConfigurationError
from hookstream.pipeline.ingest.intake import IntakeHook

GROUP = "hookstream.plugins"


@dataclass(frozen=True)
class Plugin:
    """What a plug-in adds."""

    name: str
    intake_hooks: Sequence[IntakeHook] = ()
    # Called with the web application (a FastAPI app) and the console's router.
    mount: Callable[[Any, Any], None] | None = None
    # Console navigation entries after the core's: (key, path, label).
    console_links: Sequence[tuple[str, str, str]] = ()


def load(names: Sequence[str] | None = None) -> list[Plugin]:
    """The plug-ins ``names`` (every installed one when None), loaded from their entry points."""
    points = {ep.name: ep for ep in entry_points(group=GROUP)}
    wanted = sorted(points) if names is None else list(names)
    missing = [n for n in wanted if n not in points]
    if missing:
        raise ConfigurationError(
            f"HOOKSTREAM_PLUGINS names {', '.join(missing)}, which is not installed "
            f"(installed: {', '.join(sorted(points)) or 'none'})")
    plugins = []
    for name in wanted:
        plugin = points[name].load()
        if not isinstance(plugin, Plugin):
            raise ConfigurationError(f"the entry point of plug-in {name} is not a Plugin")
        plugins.append(plugin)
    return plugins
