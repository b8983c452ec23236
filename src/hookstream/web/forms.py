"""HTML-form and OAuth2 bodies (application/x-www-form-urlencoded), read with limits."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from hookstream.errors import FormError as FormError

FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(
    request: Request, *, limit: int = 64 * 1024, max_fields: int = 100
) -> dict[str, list[str]]:
    """The fields of an url-encoded body, every value of each, in order.

    Read here rather than with Starlette's parser: it has no size limit for url-encoded
    bodies and replaces bad UTF-8 silently; this refuses both (FormError)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise FormError(f"send the parameters as {FORM_TYPE}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormError(f"the body is larger than {limit} bytes")
    try:
        pairs = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict",
            max_num_fields=max_fields,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError("the body is not valid url-encoded form data") from None
    fields: dict[str, list[str]] = {}
    for key, value in pairs:
        fields.setdefault(key, []).append(value)
    return fields


def first(fields: dict[str, list[str]], name: str) -> str | None:
    """The first value of field ``name`` (None when absent)."""
    values = fields.get(name)
    return values[0] if values else None
