"""The transform editor's live preview: the expression typed on a connector's form, applied
to the organization's most recent message, answered as JSON to the page's script."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from hookstream.errors import ValidationFailed
from hookstream.services import transforms
from hookstream.web.console.web import Page, console_page, posted_form

router = APIRouter(include_in_schema=False)

PREVIEW = "/console/transforms/preview"


def transform_of(expression: str) -> dict[str, Any] | None:
    """The API's ``transform`` for the form's text: None (no transform) when it is empty."""
    return {"language": "jsonata", "expression": expression} if expression.strip() else None


@router.post(PREVIEW)
@console_page
async def preview(page: Page) -> Response:
    """``{"messageId", "message", "result"}`` or ``{"error"}`` (with the message when there
    is one): what the workers would send for the latest message."""
    form = await posted_form(page)
    expression = form.raw("expression")
    recent = await transforms.recent_message(page.rt, page.org_id)
    if recent is None:
        return JSONResponse({"error": "No message yet: the preview uses the organization's "
                                      "most recent message."})
    answer: dict[str, Any] = {"messageId": recent["id"], "message": recent["message"]}
    if not expression.strip():
        return JSONResponse({**answer, "error": "No transform: the message is sent as it is."})
    try:
        answer.update(await transforms.preview(page.rt, expression, recent["message"]))
    except ValidationFailed as exc:
        answer["error"] = exc.message
    return JSONResponse(answer)
