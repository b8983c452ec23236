"""The HTTP request of one delivery: URL, authentication and Standard Webhooks headers."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from hookstream.pipeline.deliver.retry import RetryPolicy
from hookstream.pipeline.deliver.signing import new_secret, secret_key
from hookstream.pipeline.deliver.webhook import Endpoint, auth_headers, join_url, webhook_headers

BODY = b'{"deviceId":"dev-1","property":"p","timestamp":1,"payload":1}'


@pytest.mark.parametrize(
    ("base", "route", "expected"),
    [
        ("https://h.example", "/values", "https://h.example/values"),
        ("https://h.example/", "/values", "https://h.example/values"),
        ("https://h.example", "values", "https://h.example/values"),
        ("https://h.example/", "values", "https://h.example/values"),
        ("https://h.example//", "//values", "https://h.example/values"),
        ("https://h.example/api", "/v1/values", "https://h.example/api/v1/values"),
        ("https://h.example/api/", "/v1/values/", "https://h.example/api/v1/values/"),
        ("https://h.example/api", "values?x=1", "https://h.example/api/values?x=1"),
        ("https://h.example/api", "", "https://h.example/api"),
    ],
)
def test_join_url(base: str, route: str, expected: str) -> None:
    assert join_url(base, route) == expected


def test_endpoint_url_for_each_kind() -> None:
    endpoint = Endpoint(
        id="con_1",
        base_url="https://h.example/hooks/",
        routes={"values": "/v", "events": "e", "alarms": "/a/"},
        signing_key=b"k" * 32,
        policy=RetryPolicy(()),
    )
    assert endpoint.url_for("values") == "https://h.example/hooks/v"
    assert endpoint.url_for("events") == "https://h.example/hooks/e"
    assert endpoint.url_for("alarms") == "https://h.example/hooks/a/"


@pytest.mark.parametrize("auth", [{}, {"type": "none"}])
def test_no_authentication_adds_no_header(auth: dict[str, Any]) -> None:
    assert auth_headers(auth) == {}


def test_basic_authentication() -> None:
    headers = auth_headers({"type": "basic", "username": "alice", "password": "s3cr:t"})
    assert headers == {"Authorization": "Basic " + base64.b64encode(b"alice:s3cr:t").decode()}


def test_basic_authentication_encodes_utf8() -> None:
    headers = auth_headers({"type": "basic", "username": "zoé", "password": "mot-de-passé"})
    encoded = headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded).decode("utf-8") == "zoé:mot-de-passé"


def test_bearer_authentication() -> None:
    assert auth_headers({"type": "bearer", "token": "tok_123"}) == {
        "Authorization": "Bearer tok_123"
    }


def test_api_key_authentication() -> None:
    assert auth_headers({"type": "api_key", "header": "X-Api-Key", "value": "k-1"}) == {
        "X-Api-Key": "k-1"
    }


def test_oauth2_adds_no_static_header() -> None:
    auth = {"type": "oauth2_client_credentials", "tokenUrl": "https://a", "clientId": "c"}
    assert auth_headers(auth) == {}


def endpoint_with(auth: dict[str, Any], secrets: list[str]) -> Endpoint:
    """An endpoint signing with secrets[0], and with secrets[1] as a previous key in grace."""
    return Endpoint(
        id="con_1",
        base_url="https://h.example",
        routes={"values": "/values"},
        signing_key=secret_key(secrets[0]),
        previous_key=secret_key(secrets[1]) if len(secrets) > 1 else None,
        previous_key_until=time.time() + 3600,
        policy=RetryPolicy(()),
        auth=auth,
    )


def test_webhook_headers_carry_standard_webhooks_headers() -> None:
    secret = new_secret()
    ts = int(time.time())
    headers = webhook_headers(endpoint_with({}, [secret]), "msg_01", ts, BODY)
    assert headers["webhook-id"] == "msg_01"
    assert headers["webhook-timestamp"] == str(ts)
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert "Authorization" not in headers
    Webhook(secret).verify(BODY, headers)


def test_webhook_headers_sign_with_every_key_during_rotation() -> None:
    old, new = new_secret(), new_secret()
    ts = int(time.time())
    headers = webhook_headers(endpoint_with({}, [old, new]), "msg_01", ts, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)


def test_webhook_headers_add_the_connector_authentication() -> None:
    secret = new_secret()
    ts = int(time.time())
    bearer = webhook_headers(
        endpoint_with({"type": "bearer", "token": "t"}, [secret]), "msg_01", ts, BODY
    )
    assert bearer["Authorization"] == "Bearer t"
    Webhook(secret).verify(BODY, bearer)

    api_key = webhook_headers(
        endpoint_with({"type": "api_key", "header": "X-Key", "value": "v"}, [secret]),
        "msg_01",
        ts,
        BODY,
    )
    assert api_key["X-Key"] == "v"
    assert api_key["webhook-id"] == "msg_01"


def test_webhook_headers_same_id_different_timestamp_on_a_new_attempt() -> None:
    endpoint = endpoint_with({}, [new_secret()])
    first = webhook_headers(endpoint, "msg_01", 1_700_000_000, BODY)
    second = webhook_headers(endpoint, "msg_01", 1_700_000_060, BODY)
    assert first["webhook-id"] == second["webhook-id"]
    assert first["webhook-timestamp"] != second["webhook-timestamp"]
    assert first["webhook-signature"] != second["webhook-signature"]


def test_webhook_headers_are_strings() -> None:
    headers = webhook_headers(endpoint_with({}, [new_secret()]), "msg_01", 5, BODY)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
