"""Transforms: the preview of an expression over a message, as a delivery would apply it."""

from __future__ import annotations

from typing import Any

import orjson

from hookstream.errors import TransformFailed, ValidationFailed
from hookstream.services.logs import list_messages
from hookstream.services.runtime import Runtime


async def preview(rt: Runtime, expression: str, message: Any) -> dict[str, Any]:
    """``{"result": ...}``: what a connector with this expression would send for ``message``
    (a message, or an array of them as in a batch), computed as the workers do (same engine,
    same time limit). A failure is ValidationFailed (``transform_failed``) with the text a
    failed delivery's attempt would show."""
    try:
        body = orjson.dumps(message)
    except orjson.JSONEncodeError as exc:  # nested deeper than 254 levels
        raise ValidationFailed(f"the message cannot be read: {exc}",
                               details=[{"field": "message", "message": str(exc)}]) from None
    try:
        result = await rt.transforms.apply(expression, body)
    except TransformFailed as exc:
        raise ValidationFailed(
            f"the transform failed: {exc}", code="transform_failed",
            details=[{"field": "expression", "message": str(exc)}],
        ) from None
    return {"result": orjson.loads(result)}


async def recent_message(rt: Runtime, org_id: str) -> dict[str, Any] | None:
    """The organization's most recent message (``id``, ``kind``, ``message``...), or None."""
    items = (await list_messages(rt, org_id, limit=1))["items"]
    return dict(items[0]) if items else None
