"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from hookstream.api.common import RuntimeDep
from hookstream.api.responses import JSON

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers", response_model=None)
async def readyz(rt: RuntimeDep) -> dict[str, Any] | JSON:
    try:
        async with rt.db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return JSON(
            {"status": "unavailable", "error": {"code": "database_unavailable",
                                                "message": type(exc).__name__}},
            status_code=503,
        )
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
