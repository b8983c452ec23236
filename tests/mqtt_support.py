"""Brokers the tests (and ``make drills``) start themselves: Debian's Mosquitto with the
shipped configuration on a free port (so a test can stop, kill and restart it), or, where
Mosquitto is not installed, an amqtt broker (MQTT 3.1.1 only) for the tests that need no more;
and a small paho client."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "mosquitto"
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
MOSQUITTO_PUB = shutil.which("mosquitto_pub")

BRIDGE_USER = "hookstream-bridge"
BRIDGE_PASSWORD = "bridge-password-for-tests"
# A privileged account the tests add to the shipped ACL: it may publish anywhere, which the
# ACL forbids every gateway.
TESTER_USER = "hookstream-tester"
TESTER_PASSWORD = "tester-password-for-tests"


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after {timeout} s")
        time.sleep(0.05)  # poll interval


def release(client: paho.Client) -> None:
    """Close the sockets a paho client still holds once its network loop is stopped.

    ``loop_start()`` and ``loop()`` open a socket pair to wake the network loop, and neither
    ``disconnect()`` nor ``loop_stop()`` closes it (nor the connection, when no DISCONNECT
    went out): paho closes them only in ``Client.__del__``
    (https://github.com/eclipse-paho/paho.mqtt.python/issues/627). A client whose callbacks
    are bound methods of an object holding it is in a reference cycle, so that happens when
    the garbage collector gets to it, in whatever test is running by then. Closed here, at
    once. (``_reset_sockets`` is what ``__del__`` calls; paho has no public close.)
    """
    client._reset_sockets()


class Broker:
    """A broker process on a free port of 127.0.0.1."""

    port: int
    log: Path
    protocol: str = "5"
    process: subprocess.Popen[bytes] | None = None

    def url(self, user: str = BRIDGE_USER, password: str = BRIDGE_PASSWORD) -> str:
        query = "" if self.protocol == "5" else "?protocol=3.1.1"
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}{query}"

    def add_user(self, name: str, password: str) -> None:
        """Let ``name`` sign in (a gateway: its id and its ingest token)."""

    def start(self) -> None:
        raise NotImplementedError

    def _started(self, what: str) -> None:
        """Until the process listens; one that does not is killed and reaped, then reported
        (the fixtures stop only a broker that started)."""
        try:
            wait_for_port(self.port)
        except AssertionError:
            self.kill()
            log = self.log.read_text() if self.log.exists() else "(no log)"
            raise AssertionError(f"{what} did not start: {log}") from None

    def stop(self) -> int | None:
        """A graceful stop (SIGTERM): Mosquitto writes its persistence file. Its exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            return None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)
        self.process = None


@dataclass
class Mosquitto(Broker):
    """Mosquitto with ``deploy/mosquitto``'s configuration, its paths moved into ``directory``."""

    directory: Path = Path(".")
    port: int = 0
    users: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self.conf = self.directory / "mosquitto.conf"
        self.passwords = self.directory / "passwords"
        self.acl = self.directory / "acl"
        self.log = self.directory / "mosquitto.log"
        self.acl.write_text(
            (SHIPPED / "acl").read_text()
            + f"\n# Tests only\nuser {TESTER_USER}\ntopic readwrite hookstream/#\n"
        )
        self.conf.write_text(self._render((SHIPPED / "mosquitto.conf").read_text()))
        self.add_user(BRIDGE_USER, BRIDGE_PASSWORD)
        self.add_user(TESTER_USER, TESTER_PASSWORD)

    def _render(self, shipped: str) -> str:
        moved = {
            "listener": f"listener {self.port} 127.0.0.1",
            "password_file": f"password_file {self.passwords}",
            "acl_file": f"acl_file {self.acl}",
            "persistence_location": f"persistence_location {self.directory / 'data'}/",
        }
        lines = [moved.get(line.split(" ", 1)[0], line) for line in shipped.splitlines()]
        # As root Mosquitto would switch to the mosquitto user, who cannot read these files.
        lines += [f"user {getpass.getuser()}", f"log_dest file {self.log}"]
        return "\n".join(lines) + "\n"

    def add_user(self, name: str, password: str) -> None:
        assert MOSQUITTO_PASSWD is not None
        create = [] if self.passwords.exists() else ["-c"]
        subprocess.run([MOSQUITTO_PASSWD, *create, "-b", str(self.passwords), name, password],
                       check=True, capture_output=True)
        self.users[name] = password
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)  # reload the password file
            # Until the broker has read it: it lets the new user in.
            deadline = time.monotonic() + 30
            while not self._accepts(name, password):
                if time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not let {name} in 30 s after SIGHUP")
                time.sleep(0.05)  # poll interval

    def _accepts(self, name: str, password: str) -> bool:
        """Whether the broker accepts ``name`` now (a throwaway connection, clean start)."""
        result: list[ReasonCode] = []
        probe = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{os.urandom(4).hex()}",
                            protocol=paho.MQTTv5)
        probe.username_pw_set(name, password)
        probe.on_connect = lambda _c, _u, _f, reason, _p: result.append(reason)
        try:
            probe.connect("127.0.0.1", self.port, keepalive=5)
            deadline = time.monotonic() + 5
            while not result and time.monotonic() < deadline:
                probe.loop(0.05)
        except OSError:
            return False
        finally:
            with contextlib.suppress(Exception):
                probe.disconnect()
                for _ in range(20):  # the loop sends the DISCONNECT and closes the socket
                    if probe.socket() is None:
                        break
                    probe.loop(0.05)
            release(probe)  # and the socket pair loop() made
        return bool(result) and not result[0].is_failure

    def start(self) -> None:
        assert MOSQUITTO is not None
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._started("mosquitto")


@dataclass
class Amqtt(Broker):
    """amqtt's broker (MQTT 3.1.1, anonymous), where Mosquitto is not installed."""

    directory: Path = Path(".")
    port: int = 0
    protocol: str = "3.1.1"

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.conf = self.directory / "amqtt.yaml"
        self.log = self.directory / "amqtt.log"
        self.conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
            "  amqtt.plugins.sys.broker.BrokerSysPlugin:\n    sys_interval: 0\n"
        )

    def start(self) -> None:
        """amqtt's broker in a process of its own (a Python process: nothing of amqtt is
        imported into the tests' process but its version)."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(self.conf)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self._started("amqtt")


def amqtt_available() -> bool:
    try:
        import amqtt  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Client:
    """A paho client on its own network thread, for publishing and watching topics in tests."""

    broker: Broker
    user: str = TESTER_USER
    password: str = TESTER_PASSWORD
    client_id: str = "tester"
    received: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        v5 = self.broker.protocol == "5"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        if isinstance(self.broker, Mosquitto):
            self.client.username_pw_set(self.user, self.password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.acks: dict[int, ReasonCode | None] = {}
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode | None, _p: Any) -> None:
        with self._lock:
            self.acks[mid] = reason

    def connect(self) -> Client:
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise AssertionError("the test client could not connect")
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release(self.client)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes | str, wait: bool = True) -> int:
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)
        return info.mid

    def messages(self, topic_suffix: str = "") -> list[tuple[str, bytes]]:
        with self._lock:
            return [m for m in self.received if m[0].endswith(topic_suffix)]


@contextlib.contextmanager
def connected(broker: Broker, **kwargs: Any) -> Iterator[Client]:
    client = Client(broker, **kwargs).connect()
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def running_mosquitto(directory: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own, in ``directory``, killed on the way out (skipped, or
    failed where services are required, when the binary is not installed)."""
    from tests.conftest import unavailable

    if MOSQUITTO is None or MOSQUITTO_PASSWD is None:
        unavailable("Mosquitto", "the mosquitto binary is not installed "
                    "(Debian: apt install mosquitto mosquitto-clients)")
    broker = Mosquitto(directory)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
