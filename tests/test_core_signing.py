"""Standard Webhooks signing, checked against the reference ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookstream.pipeline.deliver.signing import InvalidSecret, new_secret, secret_key, sign

BODY = b'{"deviceId":"dev-1","property":"temperature","timestamp":1700000000000,"payload":21.5}'


def whsec(n_bytes: int, fill: int = 7) -> str:
    return "whsec_" + base64.b64encode(bytes([fill]) * n_bytes).decode()


def signed_headers(secrets: list[str], msg_id: str = "msg_1", body: bytes = BODY) -> dict[str, str]:
    ts = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([secret_key(s) for s in secrets], msg_id, ts, body),
    }


# --- new_secret ------------------------------------------------------------------------------


def test_new_secret_is_whsec_and_base64_of_32_bytes() -> None:
    secret = new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_new_secret_is_accepted_by_secret_key() -> None:
    secret = new_secret()
    assert secret_key(secret) == base64.b64decode(secret[len("whsec_") :])


def test_new_secrets_differ() -> None:
    assert len({new_secret() for _ in range(50)}) == 50


# --- secret_key ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_bytes", [24, 25, 32, 48, 63, 64])
def test_secret_key_accepts_24_to_64_bytes(n_bytes: int) -> None:
    assert secret_key(whsec(n_bytes)) == bytes([7]) * n_bytes


@pytest.mark.parametrize("n_bytes", [0, 1, 16, 23, 65, 128])
def test_secret_key_rejects_other_sizes(n_bytes: int) -> None:
    with pytest.raises(InvalidSecret, match=str(n_bytes)):
        secret_key(whsec(n_bytes))


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(b"k" * 32).decode(),  # no prefix
        "whsec" + base64.b64encode(b"k" * 32).decode(),  # prefix without underscore
        "WHSEC_" + base64.b64encode(b"k" * 32).decode(),
        "sk_" + base64.b64encode(b"k" * 32).decode(),
        "",
    ],
)
def test_secret_key_requires_the_prefix(secret: str) -> None:
    with pytest.raises(InvalidSecret, match="whsec_"):
        secret_key(secret)


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_!!!!not-base64!!!!!!!!!!!!!!!!!!!!!!!!",
        "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # '-' and '_'
        "whsec_" + base64.b64encode(b"k" * 32).decode().rstrip("="),  # missing padding
        "whsec_" + base64.b64encode(b"k" * 32).decode() + "\n",
        "whsec_ " + base64.b64encode(b"k" * 32).decode(),
    ],
)
def test_secret_key_rejects_bad_base64(secret: str) -> None:
    with pytest.raises(InvalidSecret, match="base64"):
        secret_key(secret)


def test_invalid_secret_is_a_value_error() -> None:
    assert issubclass(InvalidSecret, ValueError)


# --- sign: interoperability with standardwebhooks --------------------------------------------


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = new_secret()
    headers = signed_headers([secret])
    assert Webhook(secret).verify(BODY, headers) == {
        "deviceId": "dev-1",
        "property": "temperature",
        "timestamp": 1700000000000,
        "payload": 21.5,
    }


@pytest.mark.parametrize("n_bytes", [24, 64])
def test_signature_verifies_at_the_size_limits(n_bytes: int) -> None:
    secret = whsec(n_bytes, fill=0xA5)
    Webhook(secret).verify(BODY, signed_headers([secret]))


def test_signature_covers_utf8_bodies() -> None:
    secret = new_secret()
    body = '{"unit":"°C","name":"Salle à manger ✓"}'.encode()
    Webhook(secret).verify(body, signed_headers([secret], body=body))


def test_signature_matches_the_reference_signer_exactly() -> None:
    secret = whsec(32, fill=3)
    ts = 1_700_000_000
    expected = Webhook(secret).sign("msg_abc", datetime.fromtimestamp(ts, tz=UTC), BODY.decode())
    assert sign([secret_key(secret)], "msg_abc", ts, BODY) == expected
    assert expected.startswith("v1,")


def test_signature_from_another_secret_is_refused() -> None:
    headers = signed_headers([new_secret()])
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_tampered_body_is_refused() -> None:
    secret = new_secret()
    headers = signed_headers([secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"21.5", b"99.5"), headers)


def test_changed_id_or_timestamp_is_refused() -> None:
    secret = new_secret()
    headers = signed_headers([secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})
    later = str(int(headers["webhook-timestamp"]) + 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-timestamp": later})


def test_signature_depends_on_every_input() -> None:
    key = secret_key(new_secret())
    base = sign([key], "msg_1", 100, BODY)
    assert sign([key], "msg_1", 100, BODY) == base  # deterministic
    assert sign([key], "msg_2", 100, BODY) != base
    assert sign([key], "msg_1", 101, BODY) != base
    assert sign([key], "msg_1", 100, BODY + b" ") != base
    assert sign([secret_key(new_secret())], "msg_1", 100, BODY) != base


def test_two_keys_give_two_space_separated_signatures() -> None:
    old, new = new_secret(), new_secret()
    header = signed_headers([old, new])["webhook-signature"]
    parts = header.split(" ")
    assert len(parts) == 2
    assert all(re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", p) for p in parts)
    assert parts[0] != parts[1]


def test_rotation_header_verifies_against_either_secret() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers([old, new])
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_rotation_keeps_key_order() -> None:
    a, b = secret_key(new_secret()), secret_key(new_secret())
    both = sign([a, b], "msg_1", 100, BODY).split(" ")
    assert both == [sign([a], "msg_1", 100, BODY), sign([b], "msg_1", 100, BODY)]
