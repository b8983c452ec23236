"""MQTT 5 publishing for broker connectors (paho-mqtt in its network thread).

QoS 1 is delivered on the broker's PUBACK (a PUBACK with a failure reason code, such as
"Not authorized" or "Quota exceeded", fails the attempt); QoS 0 once written to the socket.
The signature travels as MQTT 5 user properties ``webhook-id``, ``webhook-timestamp``,
``webhook-signature`` (and the connector's static headers, ``traceparent``); the body's type
as the Content Type property.

paho reports from its network thread; every report is handed to the event loop, so a PUBACK
is matched with its publish on the loop, after the publish registered it. paho's own
reconnection is off: a broken connection fails what waits on it and the pool opens a new one
at the next delivery (the retry policy decides when that is).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hookstream.errors import ConnectError, DeliveryError
from hookstream.ids import new_id
from hookstream.pipeline.deliver.broker_target import BrokerTarget
from hookstream.pipeline.deliver.http11 import Timeouts

_MAX_INFLIGHT = 65000  # paho's default (20) would queue publishes behind the first ones
_KEEPALIVE = 60


class _NamedTLS(ssl.SSLContext):
    """Checks the certificate against the broker's name while paho connects to the address
    the SSRF guard checked (paho would check it against that address)."""

    server_name = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


class MqttConnection:
    """One MQTT 5 connection of a connector."""

    def __init__(self, target: BrokerTarget, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop
        self._alive = False
        self._connected: asyncio.Future[None] = loop.create_future()
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=new_id("hookstream"),
            protocol=paho.MQTTv5, reconnect_on_failure=False,
        )
        self._client.max_inflight_messages_set(_MAX_INFLIGHT)
        self._client.max_queued_messages_set(0)  # no limit: the worker's concurrency is one
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    @classmethod
    async def open(cls, target: BrokerTarget, address: str, timeouts: Timeouts,
                   tls: ssl.SSLContext) -> MqttConnection:
        """Connected (CONNACK received) to ``address``, the checked address of the host."""
        conn = cls(target, asyncio.get_running_loop())
        client = conn._client
        if target.username is not None or target.password is not None:
            client.username_pw_set(target.username or "", target.password)
        if target.tls:
            named = _NamedTLS(ssl.PROTOCOL_TLS_CLIENT)
            named.load_default_certs()
            named.server_name = target.host
            if tls.verify_mode == ssl.CERT_NONE:  # a test's context without checks
                named.check_hostname = False
                named.verify_mode = ssl.CERT_NONE
            client.tls_set_context(named)
        client.connect_timeout = timeouts.connect
        try:
            await asyncio.to_thread(client.connect, address, target.port, _KEEPALIVE,
                                    clean_start=True)
            client.loop_start()
            await conn._connected
        except BaseException:
            await conn.close()
            raise
        conn._alive = True
        return conn

    @property
    def alive(self) -> bool:
        return self._alive

    # Network thread: hand everything to the loop -----------------------------------------
    def _call(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._call(self._connack, reason)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._call(self._lost, f"the broker closed the connection ({reason})")

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._call(self._acked, mid, reason)

    # Event loop ---------------------------------------------------------------------------
    def _connack(self, reason: ReasonCode) -> None:
        if self._connected.done():
            return
        if reason.is_failure:
            self._connected.set_exception(
                ConnectError(f"the MQTT broker refused the connection: {reason}"))
        else:
            self._connected.set_result(None)

    def _lost(self, why: str) -> None:
        self._alive = False
        if not self._connected.done():
            self._connected.set_exception(ConnectError(why))
            # Retrieved here: after a failed open nobody awaits it any more.
            self._connected.exception()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectError(f"{why} before acknowledging the publish"))

    def _acked(self, mid: int, reason: ReasonCode) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None or fut.done():
            return
        if reason.is_failure:
            fut.set_exception(DeliveryError(f"the MQTT broker refused the publish: {reason}"))
        else:
            fut.set_result("PUBACK" if self._target.qos else "written (QoS 0)")

    async def publish(self, topic: str, webhook_id: str, headers: Mapping[str, str],
                      body: bytes, timeout: float) -> str:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [(k, v) for k, v in headers.items() if k != "content-type"]
        props.ContentType = headers.get("content-type", "application/json")
        info = self._client.publish(topic, body, self._target.qos, self._target.retain,
                                    properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._alive = self._alive and info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN
            raise ConnectError(f"MQTT publish failed: {paho.error_string(info.rc)}")
        fut: asyncio.Future[str] = self._loop.create_future()
        self._pending[info.mid] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(info.mid, None)

    async def close(self) -> None:
        self._alive = False
        client = self._client

        def stop() -> None:
            client.disconnect()
            client.loop_stop()
            # loop_start()'s socket pair would stay open until Client.__del__ (see the bridge).
            client._reset_sockets()

        await asyncio.to_thread(stop)
        self._lost("the connection was closed")
