"""Every error answered as ``{"error": {"code", "message", "details"?}}``; never a 500 for
bad input."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hookstream.errors import Refused
from hookstream.security.secretbox import UndecryptableSecret
from hookstream.storage.database import database_away
from hookstream.web.api.responses import JSON
from hookstream.web.statuses import STATUS as STATUS
from hookstream.web.statuses import status_for

log = logging.getLogger(__name__)
_last_database_log = 0.0



_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "too_many_requests",
}


ErrorBody = Callable[[int, str, str, Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """How the routes under ``prefix`` (a plug-in's) answer errors, and its OpenAPI schema."""

    prefix: str
    body: ErrorBody
    schema_name: str
    schema: dict[str, Any]


def add_shape(app: FastAPI, prefix: str, body: ErrorBody, schema_name: str,
              schema: dict[str, Any]) -> None:
    """Answer errors under ``prefix`` with ``body(status, code, message, details)``.

    For a plug-in whose API keeps another service's error shape (the thermostat cloud's
    Smarther API answers ``{"statusCode", "message"}``)."""
    shapes: list[ErrorShape] = getattr(app.state, "error_shapes", [])
    app.state.error_shapes = [*shapes, ErrorShape(prefix, body, schema_name, schema)]


def shape_for(app: Any, path: str) -> ErrorShape | None:
    """The shape registered for ``path``, or None for the contract's own."""
    state = getattr(app, "state", None)
    shapes: list[ErrorShape] = getattr(state, "error_shapes", [])
    return next((s for s in shapes if path.startswith(s.prefix)), None)


def error_body(status: int, code: str, message: str, details: Any = None,
               app: Any = None, path: str = "") -> dict[str, Any]:
    """The error body for a request to ``path`` of ``app``."""
    shape = shape_for(app, path) if app is not None else None
    if shape is not None:
        return shape.body(status, code, message, details)
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int, code: str, message: str, details: Any = None, request: Request | None = None
) -> JSON:
    if request is None:
        return JSON(error_body(status, code, message, details), status_code=status)
    body = error_body(status, code, message, details, request.app, request.url.path)
    return JSON(body, status_code=status)


# The error bodies as OpenAPI schemas: FastAPI documents only its own 422 shape, which this
# module never sends, so document_errors puts these in its place.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                               "index": {"type": "integer"}},
            }},
        },
    }},
}
# OAuth2 answers RFC 6749 errors (documented on its routes); health takes no input.
_OWN_ERRORS = ("/oauth2/", "/healthz", "/readyz", "/metrics")


def document_errors(schema: dict[str, Any], app: Any = None) -> None:
    """Declare every operation's 4xx (and 503) answers in the OpenAPI ``schema``, in place."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for shape in getattr(getattr(app, "state", None), "error_shapes", ()):
        schemas[shape.schema_name] = shape.schema
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(_OWN_ERRORS):
            continue
        shape = shape_for(app, path)
        name = "Error" if shape is None else shape.schema_name
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "The request is not valid", "content": content}
            responses["4XX"] = {"description": "Refused: the error says why", "content": content}
            responses["503"] = {"description": "The database cannot be reached; try again "
                                               "(Retry-After)", "content": content}
    if "HTTPValidationError" not in str(schema.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _loc(loc: tuple[Any, ...]) -> str:
    # Only the first part says where the value came from; a field of the body may itself be
    # called "header" (api_key authentication) and must stay in the name.
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    return ".".join(str(p) for p in loc)


def describe_validation(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for err in errors:
        field = _loc(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        whole_body = tuple(err.get("loc", ())) == ("body",)
        if whole_body and kind == "missing":
            # Without this the message would be "'' is required".
            msg = "a JSON body is required"
        elif whole_body and kind in ("model_attributes_type", "dict_type", "model_type"):
            msg = "the body must be a JSON object (Content-Type: application/json)"
        elif kind == "extra_forbidden":
            msg = f"'{field}' is not a known field"
        elif kind == "missing":
            msg = f"'{field}' is required"
        elif field:
            msg = f"'{field}': {msg}"
        details.append({"field": field, "message": msg})
    if not details:
        return "the request is not valid", []
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return details[0]["message"] + more, details


def install(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSON:
        response = error_response(
            status_for(exc), exc.code, exc.message, exc.details, request=request
        )
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSON:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the body is not valid JSON",
                                  request=request)
        message, details = describe_validation(errors)
        return error_response(422, "validation_error", message, details, request=request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSON:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such path"
        return error_response(exc.status_code, code, message, request=request)

    async def _database(request: Request, exc: Exception) -> JSON:
        if not database_away(exc):
            return await _unexpected(request, exc)
        global _last_database_log
        now = time.monotonic()
        if now - _last_database_log > 10:  # one line per 10 s, not one per request
            _last_database_log = now
            log.warning("the database cannot be reached (%s); answering 503", exc)
        response = error_response(503, "database_unavailable",
                                  "the database cannot be reached; try again shortly",
                                  request=request)
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(UndecryptableSecret)
    async def _secrets_key(request: Request, exc: UndecryptableSecret) -> JSON:
        # The deployment's key, not the request, is wrong: say so (the message names no
        # secret) and let the client try again once an operator has fixed the setting.
        log.error("a stored secret cannot be decrypted: check HOOKSTREAM_SECRETS_KEY (%s)", exc)
        response = error_response(
            503, "secrets_key_mismatch",
            "a stored secret cannot be decrypted with this server's HOOKSTREAM_SECRETS_KEY; "
            "an operator must configure the key it was stored with", request=request)
        response.headers["Retry-After"] = "60"
        return response

    # Handled here (not by the catch-all below, which Starlette re-raises and uvicorn logs and
    # answers by closing the connection): a database restart is a 503, once in the log.
    for kind in (DBAPIError, SATimeoutError, OSError, asyncpg.PostgresConnectionError,
                 asyncpg.ConnectionDoesNotExistError):
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSON:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "an internal error occurred; it is logged",
                              request=request)
