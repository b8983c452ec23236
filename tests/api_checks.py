"""Assertions shared by the API tests (test_api_*.py): the contract's error body."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def error_of(
    resp: httpx.Response, status: int, code: str | None = None, *, names: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Assert ``resp`` is the contract's error: ``status``, ``{"error": {"code", "message",
    "details"?}}``, the given code, and a message naming each of ``names``."""
    assert resp.status_code == status, f"{resp.status_code} != {status}: {resp.text}"
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert {"code", "message"} <= set(err) <= {"code", "message", "details"}, err
    assert isinstance(err["code"], str) and err["code"], err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    if code is not None:
        assert err["code"] == code, err
    for name in names:
        assert name in err["message"], f"{name!r} not named in {err['message']!r}"
    return dict(err)


def shape(err: dict[str, Any], *ids: str) -> dict[str, Any]:
    """An error with the ids it names blanked out, to compare two errors."""
    message = err["message"]
    for i in ids:
        message = message.replace(i, "<id>")
    return {"code": err["code"], "message": message, "keys": sorted(err)}


def message(device: str = "d1", prop: str = "temperature", ts: int = 1_700_000_000_000,
            **extra: Any) -> dict[str, Any]:
    """A valid datastream message."""
    return {"deviceId": device, "property": prop, "timestamp": ts, "payload": 21.5, **extra}
