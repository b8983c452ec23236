"""``hookstream simulate`` against a real ``hookstream serve``, into a real receiver.

The MQTT transport is not run here end to end: that needs the MQTT bridge (being built), and
is for its tests; its topics, bodies and URLs are unit tested in test_core_simulate.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from hookstream.deliver.signing import new_secret
from hookstream.ingest.message import FIELDS
from tests.support import ADMIN_KEY, Receiver, free_port, hookstream_cmd, spawn

SUMMARY = re.compile(r"sent (\d+), accepted (\d+), refused (\d+), unanswered (\d+)")


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hookstream serve`` on SQLite, as ``make run`` starts it, for every test here."""
    folder = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = child_env()
    env.update(HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", HOOKSTREAM_ALLOW_PRIVATE_TARGETS="true",
               HOOKSTREAM_ADMIN_KEY=ADMIN_KEY, HOOKSTREAM_POLL_INTERVAL="0.2")
    log = folder / "serve.log"
    server = spawn(hookstream_cmd("serve"), env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(20)


async def simulate(cwd: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *hookstream_cmd("simulate", *args), cwd=cwd, env=child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def summary(stdout: str) -> tuple[int, int, int, int]:
    match = SUMMARY.search(stdout)
    assert match, stdout
    sent, accepted, refused, unanswered = (int(g) for g in match.groups())
    return sent, accepted, refused, unanswered


def check_webhooks(receiver: Receiver, secret: str, expected: int) -> None:
    """Every webhook is signed with ``secret``, carries a whole message, and none is extra."""
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == expected
    verifier = Webhook(secret)
    for item in receiver.received:
        verifier.verify(item.body, item.headers)  # raises when it does not verify
        kind = item.path.removeprefix("/hooks/")
        assert kind in ("values", "events", "alarms"), item.path
        body = orjson.loads(item.body)
        assert list(body) == list(FIELDS)
        assert body["receivedAt"] is not None and body["tags"]["site"]
        if kind == "events":
            assert body["property"] == "door" and body["payload"] in ("open", "closed")


async def test_setup_then_a_second_run_deliver_every_accepted_message_signed(
    api: str, receiver: Receiver, tmp_path: Path
) -> None:
    secret = new_secret()
    state = tmp_path / "sim" / "state.json"
    port = int(receiver.url.rsplit(":", 1)[1])
    code, out, err = await simulate(
        tmp_path, "--api", api, "--setup", "--admin-key", ADMIN_KEY, "--secret", secret,
        "--receiver", receiver.url, "--gateways", "2", "--devices", "2", "--rate", "40",
        "--duration", "2", "--quiet", "--state", str(state), "--seed", "5",
    )
    assert code == 0, out + err
    assert "Traceback" not in err
    assert f"hookstream receive --port {port} --secret {secret}" in out
    sent, accepted, refused, unanswered = summary(out)
    assert accepted == sent and refused == unanswered == 0
    assert 60 <= sent <= 80, "40 msg/s for 2 s, evenly"

    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    saved = json.loads(state.read_text())
    assert saved["organization"]["id"].startswith("org_") and saved["organization"]["apiKey"]
    assert [g["name"] for g in saved["gateways"]] == ["Gateway 01", "Gateway 02"]
    assert [g["externalId"] for g in saved["gateways"]] == ["SIM-0001", "SIM-0002"]
    assert all(g["ingestToken"] for g in saved["gateways"])
    assert saved["connector"]["secret"] == secret and saved["connector"]["id"].startswith("con_")

    await receiver.wait_for(accepted)
    await asyncio.sleep(0.5)  # nothing more comes
    check_webhooks(receiver, secret, accepted)
    kinds = {r.path for r in receiver.received}
    assert {"/hooks/values", "/hooks/events"} <= kinds
    # Device ids end with the gateway's and the device's numbers: both gateways reported.
    devices = {orjson.loads(r.body)["deviceId"] for r in receiver.received}
    assert {d[-4:-2] for d in devices} == {"01", "02"}

    # Again from the state file, in batches of five.
    code, out, err = await simulate(
        tmp_path, "--api", api, "--state", str(state), "--devices", "2", "--rate", "40",
        "--duration", "1", "--batch", "5", "--quiet",
    )
    assert code == 0, out + err
    assert "hookstream receive" not in out, "nothing is set up again"
    sent2, accepted2, refused2, _ = summary(out)
    assert accepted2 == sent2 > 0 and refused2 == 0
    await receiver.wait_for(accepted + accepted2)
    await asyncio.sleep(0.5)
    check_webhooks(receiver, secret, accepted + accepted2)


async def test_without_a_state_file_it_says_which_file(api: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "fleet.json"
    code, out, err = await simulate(tmp_path, "--api", api, "--state", str(missing),
                                    "--duration", "1")
    assert code != 0
    assert str(missing) in err and "--setup" in err
    assert "Traceback" not in err and not missing.exists()


async def test_a_wrong_admin_key_is_a_clear_error(api: str, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    code, out, err = await simulate(tmp_path, "--api", api, "--setup", "--admin-key",
                                    "hsa_not_the_key", "--state", str(state), "--duration", "1")
    assert code != 0
    assert "admin key" in err and "Traceback" not in err
    assert not state.exists()


async def test_tokens_the_server_does_not_know_are_refused_before_sending(
    api: str, tmp_path: Path
) -> None:
    state = tmp_path / "other-server.json"
    state.write_text(json.dumps({"gateways": [
        {"id": "gw_unknown", "name": "Gateway 01", "ingestToken": "hsi_not_a_token"},
    ]}))
    code, out, err = await simulate(tmp_path, "--api", api, "--state", str(state),
                                    "--duration", "1")
    assert code != 0
    assert "refused the ingest token" in err and str(state) in err
    assert "Traceback" not in err and "sent" not in out


async def test_an_unreachable_api_is_a_clear_error(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code, out, err = await simulate(tmp_path, "--api", dead, "--setup", "--admin-key",
                                    ADMIN_KEY, "--state", str(tmp_path / "s.json"))
    assert code != 0
    assert f"cannot reach the hookstream API at {dead}" in err and "Traceback" not in err
