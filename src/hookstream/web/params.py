"""Checks of request parameters shared by the API, the console and the plug-ins' routes."""

from __future__ import annotations

from starlette.requests import Request

from hookstream.errors import ValidationFailed


def reject_nul_params(request: Request) -> None:
    """422 for a path or query parameter holding a NUL character.

    No id, device id or kind can contain one, and PostgreSQL refuses it in any text
    parameter, so without this check such a request would end in a 500 there."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if isinstance(value, str) and "\x00" in value:
                raise ValidationFailed(
                    f"'{name}' must not contain NUL characters",
                    details=[{"field": name, "message": f"NUL character in the {where}"}],
                )
