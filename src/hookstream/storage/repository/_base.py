"""The repository's base: the connection and the helpers every concern's methods use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from hookstream.storage import queries as q

Rows = Sequence[Row[Any]]


class _Base:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _one(self, stmt: Any, params: dict[str, Any] | None = None) -> Row[Any] | None:
        return (await self.conn.execute(stmt, params or {})).first()

    async def _all(self, stmt: Any, params: dict[str, Any] | None = None) -> Rows:
        return (await self.conn.execute(stmt, params or {})).all()

    async def _many(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """``stmt`` once per row, through the driver's executemany (rows share their keys)."""
        if not rows:
            return
        sql, order, fixed = q.driver_sql(stmt, self.conn.dialect, tuple(rows[0]))
        params = [tuple(r[k] if k in r else fixed[k] for k in order) for r in rows]
        await self.conn.exec_driver_sql(sql, params)

    async def _count(self, stmt: Any, params: dict[str, Any]) -> int:
        return (await self.conn.execute(stmt, params)).rowcount
