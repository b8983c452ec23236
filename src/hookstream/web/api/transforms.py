"""Transforms: try an expression on a message before a connector uses it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from hookstream.services import transforms
from hookstream.services.schemas import TransformPreview
from hookstream.web.api.common import OrgId, RuntimeDep
from hookstream.web.api.docs import TRANSFORM_EXAMPLES

router = APIRouter(prefix="/api/v1/transforms", tags=["transforms"])


@router.post(
    "/preview", operation_id="previewTransform",
    summary="Apply a transform to a message and show the body a connector would send",
    description=(
        "Answers `{\"result\": ...}`: the expression applied to `message` (a message as "
        "delivered, or an array of them as a batch is), by the same engine and with the same "
        "time limit (`HOOKSTREAM_TRANSFORM_TIMEOUT_MS`) as a delivery. An expression that does "
        "not parse is a 422 `validation_error` naming `expression`; one that fails on this "
        "message, has an undefined result or runs past the limit is a 422 `transform_failed` "
        "whose message is what a failed delivery's attempt would show."
    ),
)
async def preview(
    body: Annotated[TransformPreview, Body(openapi_examples=TRANSFORM_EXAMPLES)],
    org_id: OrgId, rt: RuntimeDep,
) -> dict[str, Any]:
    del org_id  # authenticated like every route; a preview reads nothing of the organization
    return await transforms.preview(rt, body.expression, body.message)
