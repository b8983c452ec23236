"""``hookstream simulate`` against a real ``hookstream serve``, into a real receiver.

Over MQTT, through a real Mosquitto started with the shipped configuration and ACL, which the
gateways sign in to only once they are in its password file and it reloaded that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest
from rich.console import Console
from standardwebhooks.webhooks import Webhook

from hookstream.pipeline.deliver.signing import new_secret
from hookstream.pipeline.message import FIELDS
from hookstream.tools.simulate import (
    Api,
    SimulateOptions,
    SimulationError,
    run_simulation,
    wait_for_bridge,
)
from tests.conftest import unavailable
from tests.mqtt_support import MOSQUITTO, MOSQUITTO_PASSWD, Mosquitto
from tests.support import (
    ADMIN_KEY,
    Receiver,
    eventually,
    free_port,
    hookstream_cmd,
    spawn,
    wait_ready_sync,
)

SUMMARY = re.compile(r"sent (\d+), accepted (\d+), refused (\d+), unanswered (\d+)")


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}


@contextlib.contextmanager
def serving(folder: Path, **env_vars: str) -> Iterator[str]:
    """``hookstream serve`` on SQLite, as ``make run`` starts it, with ``env_vars`` more; its
    base URL once /readyz says every role (the MQTT bridge too, when there is one) is ready."""
    port = free_port()
    env = child_env()
    env.update(HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", HOOKSTREAM_ALLOW_PRIVATE_TARGETS="true",
               HOOKSTREAM_ADMIN_KEY=ADMIN_KEY, HOOKSTREAM_POLL_INTERVAL="0.2", **env_vars)
    log = folder / "serve.log"
    server = spawn(hookstream_cmd("serve"), env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready_sync(server, log, url=f"{base}/readyz", what="hookstream serve")
        yield base
    finally:
        server.terminate()
        if server.wait(30) != 0:
            raise AssertionError(f"hookstream serve did not stop cleanly: {log.read_text()}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server for the HTTP tests here."""
    with serving(tmp_path_factory.mktemp("serve")) as base:
        yield base


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """As in test_mqtt.py, for the whole module: ``mqtt_api``'s bridge stays connected to it."""
    if MOSQUITTO is None or MOSQUITTO_PASSWD is None:
        unavailable(
            "Mosquitto",
            "the mosquitto binary is not installed "
            "(Debian: apt install mosquitto mosquitto-clients)",
        )
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture(scope="module")
def mqtt_api(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose MQTT bridge reads ``mosquitto`` (HOOKSTREAM_MQTT_URL)."""
    with serving(tmp_path_factory.mktemp("serve-mqtt"),
                 HOOKSTREAM_MQTT_URL=mosquitto.url()) as base:
        yield base


async def simulate(cwd: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *hookstream_cmd("simulate", *args), cwd=cwd, env=child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def options(**fields: object) -> SimulateOptions:
    """What ``hookstream simulate`` passes to ``run_simulation``, with its defaults."""
    defaults = SimulateOptions(
        api="http://127.0.0.1:8000", gateways=None, devices=4, rate=20.0, duration=60.0,
        transport="http", batch=1, mqtt_url="mqtt://127.0.0.1:1883",
        state=Path("var/simulate.json"), setup=False, admin_key=None,
        receiver="http://127.0.0.1:9000", secret=None, seed=None, quiet=True,
    )
    return replace(defaults, **fields)  # type: ignore[arg-type]


class Output:
    """The consoles ``run_simulation`` writes to, as the command line's (soft wrap)."""

    def __init__(self) -> None:
        self._out, self._err = io.StringIO(), io.StringIO()
        self.out = Console(file=self._out, soft_wrap=True, width=200)
        self.err = Console(file=self._err, soft_wrap=True, width=200)

    @property
    def stdout(self) -> str:
        return self._out.getvalue()

    @property
    def stderr(self) -> str:
        return self._err.getvalue()


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
    assert "mosquitto_passwd" not in out, "nothing about MQTT over HTTP"
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
    await settled(api, state, accepted)
    # Nothing more comes: a copy already on its way (a delivery sent twice) would land in this.
    await asyncio.sleep(0.5)  # deliberate interval: in-flight duplicates arrive
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
    await settled(api, state, accepted + accepted2)
    await asyncio.sleep(0.5)  # deliberate interval: in-flight duplicates arrive
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


async def settled(api: str, state: Path, expected: int) -> None:
    """Until the organization ``state`` saved has no delivery left pending; it must have
    ``expected`` deliveries (one per accepted message), every one delivered at the first go."""
    key = json.loads(state.read_text())["organization"]["apiKey"]
    items: list[dict[str, object]] = []
    async with httpx.AsyncClient(base_url=api, timeout=30,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        async def done() -> bool:
            nonlocal items
            resp = await http.get("/api/v1/deliveries", params={"limit": 1000})
            assert resp.status_code == 200, resp.text
            items = resp.json()["items"]
            return len(items) >= expected and all(d["status"] != "pending" for d in items)

        await eventually(done, timeout=60, what=f"{expected} deliveries, none pending")
    assert len(items) == expected, f"{len(items)} deliveries of {expected} accepted messages"
    assert {(d["status"], d["attemptCount"]) for d in items} == {("delivered", 1)}


# --- MQTT ----------------------------------------------------------------------------------

async def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    async def met() -> bool:
        return check()

    await eventually(met, timeout=timeout, interval=0.05, what=what)


def passwords_hold(broker: Mosquitto, state: Path) -> bool:
    """Every gateway of ``state`` is in the broker's password file."""
    if not state.exists():
        return False
    users = {line.split(":", 1)[0] for line in broker.passwords.read_text().splitlines()}
    return all(g["id"] in users for g in json.loads(state.read_text())["gateways"])


async def check_mqtt_run(out: str, receiver: Receiver, secret: str, api: str,
                         state: Path) -> None:
    """Every message the broker PUBACKed was stored by the bridge and delivered, signed."""
    sent, accepted, refused, unanswered = summary(out)
    assert accepted == sent > 0 and refused == unanswered == 0, out
    assert 30 <= sent <= 50, "20 msg/s for 2 s"
    assert "latency to the PUBACK" in out
    await receiver.wait_for(accepted, timeout=60)
    await settled(api, state, accepted)
    # Nothing more comes: a message the broker hands the bridge twice, or a delivery sent
    # twice, would land in this.
    await asyncio.sleep(0.5)  # deliberate interval: late duplicates arrive
    check_webhooks(receiver, secret, accepted)
    devices = {orjson.loads(r.body)["deviceId"] for r in receiver.received}
    assert {d[-4:-2] for d in devices} == {"01", "02"}, "both gateways published"


async def test_setup_adds_the_gateways_to_mosquitto_and_every_puback_becomes_a_webhook(
    mqtt_api: str, mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    # In this process: the command line does not offer --mosquitto-passwords yet.
    secret, state = new_secret(), tmp_path / "state.json"
    output = Output()
    run = asyncio.create_task(run_simulation(options(
        api=mqtt_api, setup=True, admin_key=ADMIN_KEY, secret=secret, receiver=receiver.url,
        transport="mqtt", mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}",
        mosquitto_passwords=mosquitto.passwords, gateways=2, devices=2, rate=20.0,
        duration=2.0, state=state, seed=11,
    ), output.out, output.err))
    # The broker refuses the new gateways until it reloads its password file: the run waits.
    await until(lambda: "does not let" in output.stderr or run.done(), "refusal")
    assert "sign in yet" in output.stderr and "waiting up to 120 s" in output.stderr, (
        output.stdout + output.stderr)
    # The user's part.
    assert passwords_hold(mosquitto, state), output.stdout + output.stderr
    assert mosquitto.process is not None
    mosquitto.process.send_signal(signal.SIGHUP)
    code = await asyncio.wait_for(run, 60)

    out = output.stdout
    assert code == 0, out + output.stderr
    assert f"2 gateways added to {mosquitto.passwords}" in out
    assert "kill -HUP <pid of mosquitto>" in out and "systemctl reload mosquitto" in out
    assert "mosquitto_passwd -b" not in out, "no lines to run: they ran"
    await check_mqtt_run(out, receiver, secret, mqtt_api, state)


async def test_setup_prints_the_mosquitto_passwd_lines_and_waits_for_the_broker(
    mqtt_api: str, mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    secret, state = new_secret(), tmp_path / "state.json"
    proc = await asyncio.create_subprocess_exec(
        *hookstream_cmd(
            "simulate", "--api", mqtt_api, "--setup", "--admin-key", ADMIN_KEY, "--secret",
            secret, "--receiver", receiver.url, "--transport", "mqtt", "--mqtt-url",
            f"mqtt://127.0.0.1:{mosquitto.port}", "--gateways", "2", "--devices", "2",
            "--rate", "20", "--duration", "2", "--quiet", "--state", str(state), "--seed", "12",
        ),
        cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # The broker refuses the new gateways: the run says so and waits.
        assert proc.stderr is not None
        waiting = await asyncio.wait_for(proc.stderr.readline(), 60)  # a process start
        assert b"does not let Gateway 0" in waiting and b"sign in yet" in waiting, waiting
        # The user runs the printed lines (with the tokens --setup saved) and reloads.
        for g in json.loads(state.read_text())["gateways"]:
            await asyncio.to_thread(mosquitto.add_user, g["id"], g["ingestToken"])
        raw_out, raw_err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out, err = raw_out.decode(), waiting.decode() + raw_err.decode()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err
    for g in json.loads(state.read_text())["gateways"]:
        line = f"  mosquitto_passwd -b /etc/mosquitto/hookstream/passwords {g['id']} " \
               f"{g['ingestToken']}\n"
        assert line in out
    assert "ingest tokens" in out and "kill -HUP <pid of mosquitto>" in out
    assert passwords_hold(mosquitto, state)
    await check_mqtt_run(out, receiver, secret, mqtt_api, state)


async def test_a_gateway_mosquitto_does_not_know_is_named_at_once_without_setup(
    mqtt_api: str, mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    code, out, err = await simulate(
        tmp_path, "--api", mqtt_api, "--setup", "--admin-key", ADMIN_KEY, "--receiver",
        receiver.url, "--gateways", "1", "--rate", "5", "--duration", "0.5", "--quiet",
        "--state", str(state),
    )
    assert code == 0, out + err
    gw = json.loads(state.read_text())["gateways"][0]
    started = time.monotonic()
    code, out, err = await simulate(
        tmp_path, "--api", mqtt_api, "--state", str(state), "--transport", "mqtt",
        "--mqtt-url", f"mqtt://127.0.0.1:{mosquitto.port}", "--duration", "1", "--quiet",
    )
    assert code == 2, out + err
    assert f"refused Gateway 01 ({gw['id']})" in err and "password file" in err
    assert "Traceback" not in err and "waiting" not in err
    # A process start and one refused sign-in, far from the 120 s it would wait otherwise.
    assert time.monotonic() - started < 60, "an earlier --setup's gateways: no wait"


async def test_mosquitto_passwords_is_refused_before_anything_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # never asked
    state = tmp_path / "state.json"
    asked = options(api=dead, state=state, mosquitto_passwords=tmp_path / "passwords")
    with pytest.raises(SimulationError, match="use it with --setup"):
        await run_simulation(asked, Output().out, Output().err)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SimulationError, match="mosquitto_passwd, which is not installed"):
        await run_simulation(replace(asked, setup=True, admin_key=ADMIN_KEY), Output().out,
                             Output().err)
    assert not state.exists() and not (tmp_path / "passwords").exists()


async def test_a_failing_mosquitto_passwd_leaves_the_lines_to_run(
    api: str, tmp_path: Path
) -> None:
    if MOSQUITTO_PASSWD is None:
        unavailable("mosquitto_passwd", "Debian's mosquitto is not installed")
    state, passwords = tmp_path / "state.json", tmp_path / "no-such-folder" / "passwords"
    with pytest.raises(SimulationError) as failed:
        await run_simulation(options(
            api=api, setup=True, admin_key=ADMIN_KEY, gateways=2, state=state,
            mosquitto_passwords=passwords, duration=1.0,
        ), Output().out, Output().err)
    message = str(failed.value)
    gateways = json.loads(state.read_text())["gateways"]
    assert f"could not add Gateway 01 ({gateways[0]['id']}) to {passwords}" in message
    assert "No such file or directory" in message and str(state) in message
    for g in gateways:
        assert f"mosquitto_passwd -b {passwords} {g['id']} {g['ingestToken']}" in message


async def test_over_mqtt_gateways_publish_only_once_the_servers_bridge_is_subscribed(
    api: str, mqtt_api: str
) -> None:
    """What is published before the bridge's first subscription is lost: simulate waits for it
    (the server's /readyz), and says so when the server runs no bridge at all."""
    async with aiohttp.ClientSession() as session:
        with_bridge, without = io.StringIO(), io.StringIO()
        async with httpx.AsyncClient() as client:
            ready = (await client.get(f"{mqtt_api}/readyz")).json()
        assert ready["roles"] == {"api": "ready", "mqtt": "ready", "worker": "ready"}
        await wait_for_bridge(Api(session, mqtt_api), Console(file=with_bridge, width=200))
        await wait_for_bridge(Api(session, api), Console(file=without, width=200))
    assert with_bridge.getvalue() == ""
    assert "runs no MQTT bridge" in without.getvalue()
    assert "must have logged 'hookstream ready'" in without.getvalue()
