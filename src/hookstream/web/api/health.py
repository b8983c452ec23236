"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hookstream.metrics import exposition
from hookstream.services.health import readiness_report
from hookstream.web.api.common import RuntimeDep
from hookstream.web.api.responses import JSON

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="getHealth", summary="The process is up")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/readyz", operation_id="getReadiness", response_model=None,
    summary="The database answers and every role of the process is ready (503 until then)",
)
async def readyz(rt: RuntimeDep) -> dict[str, Any] | JSON:
    status, body = await readiness_report(rt.db, rt.readiness)
    return body if status == 200 else JSON(body, status_code=status)


@router.get("/metrics", operation_id="getMetrics",
            summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
