"""deploy/systemd: the units pass ``systemd-analyze verify`` and carry their hardening, the
environment file example is what the roles start with, and a process tells systemd when it is
ready (``Type=notify``: ``READY=1`` on ``NOTIFY_SOCKET``, from the main process only)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
from cryptography.fernet import Fernet

from hookstream.cli import app
from hookstream.settings import Settings
from tests.conftest import unavailable
from tests.support import (
    READY_TIMEOUT,
    ROOT,
    free_port,
    hookstream_cmd,
    settings_env,
    spawn,
)

UNITS = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = UNITS / "hookstream.env.example"
# Each unit and the command it runs.
ROLES = {
    "hookstream-api.service": "api",
    "hookstream-worker@.service": "worker",
    "hookstream-mqtt.service": "mqtt",
    "hookstream-migrate.service": "migrate",
}
LONG_RUNNING = {"hookstream-api.service", "hookstream-worker@.service", "hookstream-mqtt.service"}
INSTALLED = "/opt/hookstream/bin/hookstream"
# The test venv's real entry point: what the checked copies of the units start.
ENTRY_POINT = Path(sys.executable).parent / "hookstream"
HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "StateDirectory": "hookstream",
    "EnvironmentFile": "/etc/hookstream/hookstream.env",
}
# Settings a deployment must give (the rest have working defaults).
MUST_SET = {"HOOKSTREAM_DATABASE_URL", "HOOKSTREAM_SECRETS_KEY", "HOOKSTREAM_ADMIN_KEY",
            "HOOKSTREAM_LISTEN", "HOOKSTREAM_MQTT_URL"}


def directives(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given, in order (keys may repeat in a unit)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def env_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile's assignments (``KEY=VALUE`` lines; ``#`` comments)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_each_unit_runs_a_real_command_with_its_hardening() -> None:
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(ROLES)
    for name, role in ROLES.items():
        unit = directives(UNITS / name)
        assert role in commands
        assert unit["Service.ExecStart"] == [f"{INSTALLED} {role}"], name
        for key, value in HARDENING.items():
            assert unit.get(f"Service.{key}") == [value], f"{name}: {key}={value}"
        if name in LONG_RUNNING:
            assert unit["Service.Type"] == ["notify"], name
            assert unit["Service.Restart"] == ["on-failure"], name
            assert unit["Install.WantedBy"] == ["multi-user.target"], name
        else:
            assert unit["Service.Type"] == ["oneshot"], name


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        unavailable("systemd-analyze", "it is not installed (apt-get install systemd)")
    assert found is not None
    return found


@pytest.fixture
def checked_units(tmp_path: Path) -> Path:
    """The units, starting this venv's ``hookstream`` instead of /opt's (verify needs the
    binary to exist)."""
    assert ENTRY_POINT.exists(), ENTRY_POINT
    for name in ROLES:
        text = (UNITS / name).read_text()
        assert INSTALLED in text
        (tmp_path / name).write_text(text.replace(INSTALLED, str(ENTRY_POINT)))
    return tmp_path


def analyze(systemd_analyze: str, *args: str) -> tuple[int, str]:
    done = subprocess.run([systemd_analyze, *args], capture_output=True, text=True,
                          timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


def unit_paths(directory: Path) -> list[str]:
    """The units to check; the worker as an instance (its port), which loads the template."""
    return [str(directory / n.replace("@.service", "@9101.service")) for n in ROLES]


def test_systemd_analyze_verify_passes_the_units(
    systemd_analyze: str, checked_units: Path
) -> None:
    """Not a word: verify exits 0 on an unknown key, but says it."""
    code, output = analyze(systemd_analyze, "verify", *unit_paths(checked_units))
    assert code == 0 and not output.strip(), output


def test_systemd_analyze_verify_fails_on_a_binary_that_is_not_there(
    systemd_analyze: str, checked_units: Path
) -> None:
    """The check above is real: the shipped path, absent here, is refused."""
    api = checked_units / "hookstream-api.service"
    api.write_text(api.read_text().replace(str(ENTRY_POINT), "/nonexistent/bin/hookstream"))
    code, output = analyze(systemd_analyze, "verify", str(api))
    assert code != 0 and "/nonexistent/bin/hookstream" in output, output


def test_systemd_analyze_security_rates_every_unit_ok(
    systemd_analyze: str, checked_units: Path
) -> None:
    """Exposure at most 2.0 of 10 ("OK") by systemd's own reckoning."""
    for path in unit_paths(checked_units):
        code, output = analyze(systemd_analyze, "security", "--offline=yes",
                               "--threshold=20", path)
        assert code == 0, f"{path}:\n{output[-3000:]}"


def test_the_env_example_names_real_settings_and_every_one_a_deployment_sets() -> None:
    values = env_file(ENV_EXAMPLE)
    fields = {f"HOOKSTREAM_{name.upper()}" for name in Settings.model_fields}
    assert not set(values) - fields, "not settings (ignored silently)"
    assert MUST_SET <= set(values)
    # What the units set themselves: this file would override it for every unit.
    assert not {"HOOKSTREAM_METRICS_LISTEN", "HOOKSTREAM_DATA_DIR"} & set(values)


def bare_env(**values: str) -> dict[str, str]:
    """This environment without any HOOKSTREAM_* setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    env.update(values)
    return env


def test_the_env_example_as_it_is_is_refused(tmp_path: Path) -> None:
    """Its placeholders cannot reach production: the role exits 2 naming the setting."""
    done = subprocess.run(hookstream_cmd("api"), env=bare_env(**env_file(ENV_EXAMPLE)),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "HOOKSTREAM_SECRETS_KEY" in done.stderr


# --- READY=1 -------------------------------------------------------------------------------

@dataclass
class Notice:
    pid: int
    state: bytes


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket that learns each sender's pid."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        # What a process is given: "@name" for an abstract socket, as systemd writes it.
        self.env = "@" + address[1:] if address.startswith("\0") else address

    def take(self, timeout: float) -> Notice | None:
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except (TimeoutError, BlockingIOError):  # BlockingIOError: timeout 0, nothing there
            return None
        pid = next(struct.unpack("3i", d[:12])[0] for level, kind, d in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
        return Notice(pid, data)

    async def wait(self, proc: subprocess.Popen[bytes], log: Path, what: str) -> Notice:
        """The next notice; fails if the process exits first or at READY_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while loop.time() < deadline:
            notice = await asyncio.to_thread(self.take, 0.5)  # a slice, to see it exit
            if notice is not None:
                return notice
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited ({proc.returncode}) without READY=1:\n"
                                     f"{log.read_text(errors='replace')[-3000:]}")
        raise AssertionError(f"{what}: no READY=1 in {READY_TIMEOUT:g} s:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    directory = tempfile.mkdtemp(prefix="hs-notify-")  # short: AF_UNIX paths are <108 bytes
    sock = NotifySocket(os.path.join(directory, "notify"))
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def stop(*procs: subprocess.Popen[bytes]) -> list[int]:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(60))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait(10))
    return codes


async def logged(proc: subprocess.Popen[bytes], log: Path, line: str,
                 timeout: float = 30.0) -> None:
    """Until ``line`` is in ``log`` (fails if ``proc`` exits or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while line not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {line!r} in {timeout:.0f} s"
        await asyncio.sleep(0.02)  # poll interval


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_serve_tells_systemd_once_from_its_own_pid(
    settings: Settings, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """With a worker process: one READY=1, from serve itself (NotifyAccess=main would refuse a
    child's), once serve and its worker are ready. A worker would tell before its readiness
    line, which serve waits for: anything it sent would be here before serve's."""
    port = free_port()
    log = tmp_path / "serve.log"
    serve = spawn(hookstream_cmd("serve"), settings_env(
        settings, HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", HOOKSTREAM_WORKERS="1",
        NOTIFY_SOCKET=notify_socket.env), log)
    try:
        notice = await notify_socket.wait(serve, log, "hookstream serve")
        assert notice == Notice(serve.pid, b"READY=1")
        assert notify_socket.take(0) is None
        # systemd is told just before the line is logged: the line follows.
        await logged(serve, log, "hookstream ready: api, delivery worker")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    finally:
        codes = stop(serve)
    assert codes == [0], log.read_text()[-3000:]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_the_env_example_runs_migrate_api_and_worker_on_postgresql(
    database_url: str, tmp_path: Path
) -> None:
    """The example with its placeholders filled, as the units run it: migrate once, then an
    API and a worker (its metrics port set as hookstream-worker@PORT sets it), each telling
    systemd READY=1 on an abstract socket."""
    port, worker_port = free_port(), free_port()
    values = env_file(ENV_EXAMPLE) | {
        "HOOKSTREAM_DATABASE_URL": database_url,
        "HOOKSTREAM_SECRETS_KEY": Fernet.generate_key().decode(),
        "HOOKSTREAM_ADMIN_KEY": secrets.token_hex(32),
        "HOOKSTREAM_LISTEN": f"127.0.0.1:{port}",
        "HOOKSTREAM_DATA_DIR": str(tmp_path / "state"),
    }
    migrated = subprocess.run(hookstream_cmd("migrate"), env=bare_env(**values), cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, check=False)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "database at revision" in migrated.stdout

    api_sock = NotifySocket(f"\0hookstream-test-{secrets.token_hex(8)}")
    worker_sock = NotifySocket(f"\0hookstream-test-{secrets.token_hex(8)}")
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    api = spawn(hookstream_cmd("api"), bare_env(**values, NOTIFY_SOCKET=api_sock.env), api_log)
    worker = spawn(hookstream_cmd("worker"), bare_env(
        **values, NOTIFY_SOCKET=worker_sock.env,
        HOOKSTREAM_METRICS_LISTEN=f"127.0.0.1:{worker_port}"), worker_log)
    try:
        assert await api_sock.wait(api, api_log, "hookstream api") == Notice(api.pid, b"READY=1")
        assert await worker_sock.wait(worker, worker_log, "hookstream worker") == Notice(
            worker.pid, b"READY=1")
        async with httpx.AsyncClient() as client:
            for base in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{worker_port}"):
                ready = await client.get(f"{base}/readyz")
                assert ready.status_code == 200, ready.text
            org = await client.post(
                f"http://127.0.0.1:{port}/api/v1/organizations", json={"name": "Acme"},
                headers={"Authorization": f"Bearer {values['HOOKSTREAM_ADMIN_KEY']}"})
            assert org.status_code == 201, org.text
    finally:
        codes = stop(api, worker)
        api_sock.close()
        worker_sock.close()
    assert codes == [0, 0], api_log.read_text()[-2000:] + worker_log.read_text()[-2000:]
