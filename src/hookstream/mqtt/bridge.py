"""The MQTT bridge: what gateways publish to ``hookstream/{gatewayId}/{kind}``, stored, then acked.

paho-mqtt's network thread receives the QoS 1 messages with ``manual_ack`` (nothing is
acknowledged on receipt) and hands them to the event loop. The bridge stores a batch in one
transaction, then acknowledges each message in the order it arrived, as MQTT requires. The
bridge's session is persistent (MQTT 5 session expiry, or ``clean_session=False`` on 3.1.1), so
what the broker did not see acknowledged it sends again after a reconnect or a restart: nothing
is lost, and a message stored just before a crash may be stored twice (at least once).

Such a copy is recognised: each stored publish keeps the SHA-256 of its gateway, kind and bytes
(``messages.source_digest``), and a publish whose digest was stored within
``HOOKSTREAM_MQTT_DEDUPLICATE_SECONDS`` is acknowledged without storing it again. Receivers see
one message, with one ``webhook-id``. (The same holds for a gateway's own QoS 1 retransmission.)

A message that cannot be accepted (unknown gateway, malformed JSON, invalid fields, too large)
is counted (``hookstream_mqtt_refused_total``), logged with the reason, published to
``hookstream/{gatewayId}/errors`` and acknowledged: sending it again would not change the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from hookstream.errors import ConfigurationError
from hookstream.metrics import (
    DELIVERIES_ROUTED,
    MESSAGES_INGESTED,
    MQTT_CONNECTED,
    MQTT_DUPLICATES,
    MQTT_REFUSED,
)
from hookstream.pipeline.ingest.intake import Intake, Submission
from hookstream.pipeline.message import (
    DEFAULT_LIMITS,
    KINDS,
    MAX_BODY_BYTES,
    MalformedJson,
    MessageFormatError,
    MessageLimits,
    parse_messages,
)
from hookstream.pipeline.queue.enqueue import wake
from hookstream.pipeline.queue.wakeup import Wakeup
from hookstream.settings import Settings
from hookstream.tracing import HEADER, passed_on

log = logging.getLogger(__name__)

TOPIC_ROOT = "hookstream"
MAX_GATEWAY_ID = 64
# A batch being stored when the bridge is told to stop gets this long to commit and ack.
STOP_GRACE = 5.0


# --- pure part ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Where and how the bridge connects, from ``HOOKSTREAM_MQTT_URL`` and the mqtt settings."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    protocol: str = "5"
    client_id: str = "hookstream-bridge"
    shared_group: str | None = None
    session_expiry: int = 7 * 86400
    receive_maximum: int = 1000
    batch: int = 500
    reconnect_max: int = 30
    deduplicate_seconds: float = 86400.0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BridgeConfig:
        """Parse ``mqtt[s]://[user[:password]@]host[:port][?protocol=5|3.1.1]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigurationError(
                f"HOOKSTREAM_MQTT_URL must start with mqtt:// or mqtts:// (got {url!r})"
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"HOOKSTREAM_MQTT_URL: bad port ({exc})") from exc
        if not parts.hostname:
            raise ConfigurationError("HOOKSTREAM_MQTT_URL has no host")
        query = parse_qs(parts.query)
        protocol = query.get("protocol", ["5"])[-1]
        if protocol not in ("5", "3.1.1"):
            raise ConfigurationError(
                f"HOOKSTREAM_MQTT_URL: protocol must be 5 or 3.1.1 (got {protocol!r})"
            )
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            protocol=protocol,
            **options,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> BridgeConfig:
        if settings.mqtt_url is None:
            raise ConfigurationError("HOOKSTREAM_MQTT_URL is not set")
        return cls.from_url(
            settings.mqtt_url,
            client_id=settings.mqtt_client_id,
            shared_group=settings.mqtt_shared_group,
            session_expiry=settings.mqtt_session_expiry_seconds,
            receive_maximum=settings.mqtt_receive_maximum,
            batch=settings.mqtt_batch,
            reconnect_max=settings.mqtt_reconnect_max_seconds,
            deduplicate_seconds=settings.mqtt_deduplicate_seconds,
        )

    @property
    def topics(self) -> list[str]:
        """The subscriptions: one per kind, in the shared group when there is one."""
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        return [f"{prefix}{TOPIC_ROOT}/+/{kind}" for kind in KINDS]

    def describe(self) -> str:
        """The connection for a banner or a log line; never the password."""
        who = f" as {self.username}" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        return (f"{scheme}://{self.host}:{self.port}{who} (MQTT {self.protocol}, client id "
                f"{self.client_id}, topics {', '.join(self.topics)})")


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``hookstream/{gatewayId}/{kind}`` -> (gatewayId, kind); None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or parts[2] not in KINDS or not parts[1]:
        return None
    return parts[1], parts[2]


def error_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/errors"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a published message was not accepted."""

    code: str
    message: str
    details: list[dict[str, Any]] | None = None

    def payload(self, topic: str, now_ms: int) -> bytes:
        """The body published to the gateway's errors topic."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return orjson.dumps({"topic": topic, "error": error, "at": now_ms})


def check_payload(
    payload: bytes, limits: MessageLimits = DEFAULT_LIMITS
) -> list[Any] | Refusal:
    """The messages of one MQTT payload (one message or an array), or why they are refused."""
    if len(payload) > MAX_BODY_BYTES:
        return Refusal("too_large", f"the payload is larger than {MAX_BODY_BYTES} bytes")
    try:
        messages, _ = parse_messages(payload, limits)
    except MalformedJson as exc:
        return Refusal("malformed_json", exc.message)
    except MessageFormatError as exc:
        return Refusal("invalid_message", exc.message, exc.details or None)
    return list(messages)


def _user_traceparent(msg: paho.MQTTMessage) -> str | None:
    """The ``traceparent`` user property of an MQTT 5 publish, if it has one."""
    props = getattr(msg, "properties", None)
    for name, value in getattr(props, "UserProperty", None) or ():
        if name == HEADER:
            return str(value)
    return None


def digest(gateway_id: str, kind: str, payload: bytes) -> str:
    """What identifies a publish across redeliveries: its gateway, kind and bytes."""
    return hashlib.sha256(f"{gateway_id}\0{kind}\0".encode() + payload).hexdigest()


@dataclass(slots=True)
class Received:
    """One PUBLISH as the network thread handed it over."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    dup: bool
    # Filled while handling: what happened to it.
    refusal: Refusal | None = None
    stored: bool = False
    duplicate: bool = False
    digest: str = ""
    gateway_id: str = ""
    kind: str = ""
    messages: list[Any] = field(default_factory=list)
    # MQTT 5: a W3C traceparent the gateway sent as a user property.
    traceparent: str | None = None


# --- the adapter --------------------------------------------------------------------------
class Bridge:
    """Subscribes, stores what gateways publish, acknowledges what is stored."""

    def __init__(self, settings: Settings, intake: Intake, wakeup: Wakeup | None = None,
                 on_subscribed: Callable[[], None] | None = None) -> None:
        self.config = BridgeConfig.from_settings(settings)
        self.limits = MessageLimits(settings.message_max_tags, settings.message_max_string_length)
        self.intake = intake
        self.wakeup = wakeup
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        # The network thread changes these; acks read them: one lock keeps an ack from going
        # out on a connection other than the one its message came on.
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._disconnected = threading.Event()
        self._stopping = False
        self._backing_off = False
        self._last_refusal = ""
        self.connected = asyncio.Event()
        # Set once the broker acknowledged every subscription: from then on it keeps what
        # gateways publish for this session, also while the bridge is away.
        self.subscribed = asyncio.Event()
        self._on_subscribed = on_subscribed
        self._new_session = False
        # Publishes stored by this bridge, and redeliveries it recognised (logs and tests).
        self.stored = 0
        self.duplicates = 0

    # Network thread --------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, _: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            text = str(reason)
            if text != self._last_refusal:  # one line per cause, not one per retry
                log.error("MQTT broker %s:%s refused the bridge: %s",
                          self.config.host, self.config.port, text)
                self._last_refusal = text
            return
        self._last_refusal = ""
        with self._lock:
            self._generation += 1
            self._connected = True
        self._disconnected.clear()
        MQTT_CONNECTED.labels(self.config.client_id).set(1)
        log.info("MQTT bridge connected to %s:%s (session present: %s)",
                 self.config.host, self.config.port, bool(flags.session_present))
        self._new_session = not flags.session_present
        if self.config.protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.config.topics])
        else:
            client.subscribe([(t, 1) for t in self.config.topics])
        self._call(self.connected.set)

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, reasons: list[ReasonCode],
                      _p: Any) -> None:
        failed = False
        for topic, reason in zip(self.config.topics, reasons, strict=False):
            if reason.is_failure:
                failed = True
                log.error("MQTT broker refused the subscription to %s: %s", topic, reason)
        if failed:
            return
        if self._new_session:
            # Said plainly because it is the one moment MQTT can lose data: what gateways
            # published before now was not kept for this client id.
            log.info("MQTT bridge: the broker created a new session for client id %s; messages "
                     "published before this moment were not kept for it, those published from "
                     "now on are kept while the bridge is away (for %s)",
                     self.config.client_id,
                     f"{self.config.session_expiry} s" if self.config.protocol == "5"
                     else "as long as the broker keeps MQTT 3.1.1 sessions")
            self._new_session = False
        self._call(self._subscribed)

    def _subscribed(self) -> None:
        if not self.subscribed.is_set():
            self.subscribed.set()
            log.info("MQTT bridge subscribed to %s", ", ".join(self.config.topics))
            if self._on_subscribed is not None:
                self._on_subscribed()

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode,
                       _p: Any) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
        MQTT_CONNECTED.labels(self.config.client_id).set(0)
        self._disconnected.set()
        self._call(self.connected.clear)
        if was_connected and not self._stopping:
            log.warning("MQTT bridge disconnected (%s); reconnecting with backoff", reason)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        self._call(self._queue.put_nowait, Received(
            self._generation, msg.mid, msg.qos, topic, bytes(msg.payload), bool(msg.dup),
            traceparent=_user_traceparent(msg),
        ))

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: the broker resends
                loop.call_soon_threadsafe(fn, *args)

    def _client(self) -> paho.Client:
        c = self.config
        if c.protocol == "5":
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=c.client_id,
                                 protocol=paho.MQTTv5, manual_ack=True)
        else:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=c.client_id,
                                 protocol=paho.MQTTv311, clean_session=False, manual_ack=True)
            client.max_inflight_messages_set(c.receive_maximum)
        if c.username is not None:
            client.username_pw_set(c.username, c.password)
        if c.tls:
            client.tls_set()
        client.reconnect_delay_set(1, c.reconnect_max)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect(self, client: paho.Client) -> None:
        c = self.config
        if c.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = c.session_expiry
            props.ReceiveMaximum = c.receive_maximum
            client.connect_async(c.host, c.port, keepalive=30, clean_start=False,
                                 properties=props)
        else:
            client.connect_async(c.host, c.port, keepalive=30)

    def _close(self, client: paho.Client) -> None:
        self._stopping = True
        client.disconnect()
        # The acks queued before the DISCONNECT leave with it; wait for it to go out.
        self._disconnected.wait(2.0)
        client.loop_stop()
        # loop_start()'s socket pair (and a connection no DISCONNECT closed) would stay open
        # until paho's Client.__del__, which is all that closes them (paho.mqtt.python#627):
        # the network thread is stopped, so they are closed now.
        client._reset_sockets()

    # Event loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Bridge until cancelled; a batch being stored at that moment is finished first."""
        self._loop = asyncio.get_running_loop()
        # From now on this bridge has a sample, 0 until the broker accepts it.
        MQTT_CONNECTED.labels(self.config.client_id).set(0)
        client = self._client()
        self._connect(client)
        client.loop_start()
        log.info("MQTT bridge: %s", self.config.describe())
        try:
            while True:
                batch = await self._next_batch()
                task = asyncio.ensure_future(self._handle(client, batch))
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    if self._backing_off:  # the database is away: leave it to the broker
                        task.cancel()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.wait_for(task, STOP_GRACE)
                    raise
        finally:
            self._loop = None
            await asyncio.to_thread(self._close, client)
            MQTT_CONNECTED.labels(self.config.client_id).set(0)

    async def _next_batch(self) -> list[Received]:
        batch = [await self._queue.get()]
        while len(batch) < self.config.batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _handle(self, client: paho.Client, batch: list[Received]) -> None:
        todo = self._triage(batch)
        delay = 0.5
        while todo:
            try:
                routed = await self._store(todo)
                break
            except Exception as exc:  # the database is away: nothing is acked, retry
                log.warning("MQTT bridge cannot store %d messages (%s); retrying in %.1f s",
                            len(todo), exc, delay)
                self._backing_off = True
                try:
                    await asyncio.sleep(delay)
                finally:
                    self._backing_off = False
                delay = min(delay * 2, 10.0)
        else:
            routed = 0
        wake(self.wakeup, routed)
        self._answer(client, batch)

    def _triage(self, batch: list[Received]) -> list[Received]:
        """Refuse what needs no database, skip redeliveries already stored; the rest to store."""
        todo = []
        for item in batch:
            where = parse_topic(item.topic)
            if where is None:  # only possible with a broker that ignores our subscriptions
                item.refusal = Refusal("bad_topic", f"not a hookstream topic: {item.topic}")
                continue
            item.gateway_id, item.kind = where
            if len(item.gateway_id) > MAX_GATEWAY_ID:
                item.refusal = Refusal("unknown_gateway", "no gateway has this id")
                continue
            checked = check_payload(item.payload, self.limits)
            if isinstance(checked, Refusal):
                item.refusal = checked
            else:
                item.messages = checked
                item.digest = digest(item.gateway_id, item.kind, item.payload)
                todo.append(item)
        return todo

    async def _store(self, todo: list[Received]) -> int:
        """Store the messages of ``todo`` in one transaction; returns deliveries created."""
        dedupe = self.config.deduplicate_seconds
        cutoff = int((time.time() - dedupe) * 1000) if dedupe > 0 else None
        tracing = self.intake.tracing
        spans = [] if tracing is None else [
            tracing.start(f"MQTT publish {i.kind}", parent=i.traceparent, kind="consumer",
                          attributes={"messaging.system": "mqtt",
                                      "messaging.destination.name": i.topic,
                                      "hookstream.gateway_id": i.gateway_id,
                                      "hookstream.messages": len(i.messages)})
            for i in todo
        ]
        try:
            results = await self.intake.write(
                [Submission(gateway_id=i.gateway_id, kind=i.kind, messages=i.messages,
                            source_digest=i.digest,
                            traceparent=(tracing.traceparent(spans[k]) if tracing is not None
                                         else passed_on(i.traceparent)))
                 for k, i in enumerate(todo)],
                deduplicate_since=cutoff,
            )
        finally:
            for span in spans:
                span.end()
        routed = 0
        for item, result in zip(todo, results, strict=True):
            item.refusal = (Refusal("unknown_gateway", "no gateway has this id")
                            if result.unknown_gateway else None)
            item.duplicate = result.duplicate
            if item.duplicate:
                self.duplicates += 1
                MQTT_DUPLICATES.inc()
            elif result.stored:
                item.stored = True
                self.stored += 1
                MESSAGES_INGESTED.labels(item.kind).inc(len(item.messages))
                if result.routed:
                    DELIVERIES_ROUTED.labels(item.kind).inc(result.routed)
                routed += result.routed
        return routed

    def _answer(self, client: paho.Client, batch: list[Received]) -> None:
        """Publish refusals, then acknowledge every message, in the order they came."""
        now = int(time.time() * 1000)
        for item in batch:
            if item.refusal is not None:
                MQTT_REFUSED.labels(item.refusal.code).inc()
                log.warning("MQTT message on %s refused (%s): %s", item.topic,
                            item.refusal.code, item.refusal.message,
                            extra={"topic": item.topic, "reason": item.refusal.code})
                parts = item.topic.split("/")
                gateway = item.gateway_id or (parts[1] if len(parts) > 1 else "")
                if gateway and "+" not in gateway and "#" not in gateway:
                    client.publish(error_topic(gateway), item.refusal.payload(item.topic, now),
                                   qos=1)
            # An ack on a later connection could name another message; the broker sends
            # this one again instead, and its digest marks it as stored.
            with self._lock:
                if self._connected and item.generation == self._generation:
                    client.ack(item.mid, item.qos)
