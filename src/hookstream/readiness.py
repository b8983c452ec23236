"""Which roles of a process are ready: what `/readyz` answers, when "hookstream ready" is logged.

A role is expected when the process starts it and ready once it does its work: the API once it
listens, a delivery worker once its first claim went through, the MQTT bridge once the broker
acknowledged its subscriptions (what gateways publish before that is not kept for it).
A role stays ready once it was; its later trouble shows in metrics and logs
(``hookstream_mqtt_connected``), not by taking the process out of a load balancer.
Under systemd (``Type=notify``, ``NOTIFY_SOCKET`` set) the same moment is told as ``READY=1``.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("hookstream.ready")

# How each role is named in the readiness line, and what it waits for until ready.
ROLE_NAMES = {"api": "api", "worker": "delivery worker", "mqtt": "MQTT bridge"}
WAITING_FOR = {
    "api": "the HTTP server to listen",
    "worker": "the first claim of due deliveries",
    "mqtt": "the broker to acknowledge the bridge's subscriptions",
}


class Readiness:
    """The roles this process runs and what each still waits for."""

    def __init__(self) -> None:
        self._waiting: dict[str, str] = {}
        self._ready: list[str] = []

    def expect(self, role: str) -> None:
        """``role`` will run in this process; until ready, /readyz names what it waits for."""
        if role not in self._ready:
            self._waiting[role] = WAITING_FOR[role]

    def ready(self, role: str) -> None:
        """``role`` does its work now; logs the readiness line once every role is ready."""
        if self._waiting.pop(role, None) is None:
            return
        self._ready.append(role)
        if not self._waiting:
            # Before the line: whoever reads the line knows systemd was told as well.
            notify_systemd(b"READY=1")
            log.info("hookstream ready: %s", ", ".join(ROLE_NAMES[r] for r in self._ready))

    @property
    def waiting(self) -> dict[str, str]:
        """Roles not ready yet and what each waits for (empty: all ready)."""
        return dict(self._waiting)

    @property
    def roles(self) -> dict[str, str]:
        """Every expected role and its state, ``ready`` or ``starting``."""
        return {**dict.fromkeys(self._ready, "ready"), **dict.fromkeys(self._waiting, "starting")}


def notify_systemd(state: bytes) -> None:
    """Send ``state`` to systemd's notification socket (sd_notify), when it gave one."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address.startswith(("/", "@")):
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state)
    except OSError as exc:  # systemd then says the start timed out; this says why
        log.warning("could not tell systemd %r at NOTIFY_SOCKET %s: %s", state, address, exc)
