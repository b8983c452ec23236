"""Shared helpers: a statement compiled once per dialect for the driver's executemany."""

from __future__ import annotations

from typing import Any

DriverSql = tuple[str, tuple[str, ...], dict[str, Any]]
_driver_sql: dict[tuple[Any, str, tuple[str, ...]], DriverSql] = {}


def driver_sql(stmt: Any, dialect: Any, keys: tuple[str, ...]) -> DriverSql:
    """``stmt`` compiled once per dialect for the driver's executemany.

    Returns the SQL, the order of its parameters and the values the statement itself sets
    (``.values(status="delivered")``). SQLAlchemy otherwise builds every row's parameters in
    Python; for the worker's batches of outcomes that was a large part of its time. ``keys``
    are the rows' keys (an INSERT without values takes its columns from them).
    """
    cache_key = (stmt, dialect.name, keys)
    found = _driver_sql.get(cache_key)
    if found is None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        order = tuple(compiled.positiontup or ())
        fixed = {k: v for k, v in compiled.params.items() if k not in keys}
        found = (compiled.string, order, fixed)
        if len(_driver_sql) >= 1024:  # claim shapes vary with the connectors due; stay small
            _driver_sql.clear()
        _driver_sql[cache_key] = found
    return found
