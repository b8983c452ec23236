"""OpenTelemetry: one message followed from the gateway's request to the receiver's.

A real OTLP/HTTP collector (an aiohttp server decoding what the SDK's exporter posts) and a
real receiver: a value ingested with the gateway's ``traceparent`` is exported as spans of
that trace (ingest, routing, the webhook attempt), the webhook's own ``traceparent`` names the
attempt span, and the worker's claim and record spans link to it. Off (no ``OTEL_*``), the
gateway's header is passed on unchanged. The W3C parsing and the variables are unit-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from hookstream.errors import ConfigurationError
from hookstream.settings import Settings
from hookstream.tracing import format_traceparent, parse_traceparent, passed_on, wanted
from tests.support import Receiver, Service, free_socket, running_service

GATEWAY_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_SPAN = "00f067aa0ba902b7"
GATEWAY_TRACEPARENT = f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01"
VALUE = {"deviceId": "d1", "property": "t", "timestamp": 1, "payload": 21.5}


# --- the W3C header and the variables (pure) ---------------------------------------------

def test_a_valid_traceparent_is_read() -> None:
    assert parse_traceparent(GATEWAY_TRACEPARENT) == (
        int(GATEWAY_TRACE, 16), int(GATEWAY_SPAN, 16), 1)
    assert format_traceparent(*parse_traceparent(GATEWAY_TRACEPARENT)) == GATEWAY_TRACEPARENT


@pytest.mark.parametrize("value", [
    None, "", "garbage",
    f"00-{'0' * 32}-{GATEWAY_SPAN}-01",  # all-zero trace id
    f"00-{GATEWAY_TRACE}-{'0' * 16}-01",  # all-zero span id
    f"ff-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01",  # version ff is invalid
    f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01-extra",  # version 00 ends at its flags
    f"00-{GATEWAY_TRACE.upper()}-{GATEWAY_SPAN}-01",  # upper-case hex
    f"00-{GATEWAY_TRACE[:-1]}-{GATEWAY_SPAN}-01",  # short
])
def test_an_invalid_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None
    assert passed_on(value) is None


def test_a_later_version_is_read_as_version_00() -> None:
    later = f"01-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01-more"
    assert passed_on(later) == GATEWAY_TRACEPARENT


@pytest.mark.parametrize(("environ", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
])
def test_traces_are_on_only_when_the_variables_ask(environ: dict[str, str], on: bool) -> None:
    assert wanted(environ) is on


@pytest.mark.parametrize(("environ", "named"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
])
def test_an_exporter_hookstream_lacks_is_a_clear_error(environ: dict[str, str],
                                                        named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        wanted(environ)


# --- a real collector ---------------------------------------------------------------------

@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    error: bool


@dataclass
class Collector:
    """An OTLP/HTTP endpoint (``POST /v1/traces``, protobuf) keeping every span it gets."""

    url: str = ""
    spans: list[Span] = field(default_factory=list)
    service_names: set[str] = field(default_factory=set)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    self.service_names.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    self.spans.append(Span(
                        s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                        s.kind, {a.key: _value(a.value) for a in s.attributes},
                        [(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                        s.status.code == 2,  # STATUS_CODE_ERROR
                    ))
        self._arrived.set()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    async def wait_until(self, found: Callable[[], bool], timeout: float = 30.0) -> None:
        """Until ``found()`` holds for what arrived (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not found():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = sorted({s.name for s in self.spans})
                raise AssertionError(f"spans so far ({len(self.spans)}): {names}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    app = web.Application()
    found = Collector()
    app.router.add_post("/v1/traces", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    found.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield found
    finally:
        await runner.cleanup()
        sock.close()


@pytest.fixture
async def service(settings: Settings, collector: Collector,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    """The service with traces on, exported to the collector every 50 ms."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    async with running_service(settings) as svc:
        assert svc.runtime.tracing is not None
        yield svc


async def test_one_messages_spans_share_its_trace_and_the_webhook_continues_it(
    service: Service, receiver: Receiver, collector: Collector,
) -> None:
    org = await service.new_org()
    gw = await org.gateway()
    con = await org.connector(receiver.url)
    await org.trigger(con["id"], ["values"], [gw["id"]])
    resp = await service.client.post(
        "/ingest/v1/values", json=VALUE,
        headers={"Authorization": f"Bearer {gw['ingestToken']}",
                 "traceparent": GATEWAY_TRACEPARENT},
    )
    assert resp.status_code == 202, resp.text
    await receiver.wait_for(1)

    # The webhook continues the gateway's trace, under a span of ours.
    sent = parse_traceparent(receiver.received[0].headers.get("traceparent"))
    assert sent is not None
    sent_trace, sent_span = f"{sent[0]:032x}", f"{sent[1]:016x}"
    assert sent_trace == GATEWAY_TRACE
    assert sent_span != GATEWAY_SPAN

    def complete() -> bool:
        return bool(collector.named("POST /ingest/v1/values") and collector.named("route")
                    and collector.named("POST values webhook") and collector.named("claim")
                    and collector.named("record"))

    await collector.wait_until(complete)
    assert collector.service_names == {"hookstream"}
    [ingest] = collector.named("POST /ingest/v1/values")
    [route] = collector.named("route")
    [attempt] = collector.named("POST values webhook")
    assert ingest.trace_id == route.trace_id == attempt.trace_id == GATEWAY_TRACE
    assert ingest.parent_span_id == GATEWAY_SPAN
    assert route.parent_span_id == ingest.span_id
    assert attempt.parent_span_id == ingest.span_id
    assert attempt.span_id == sent_span  # the receiver's trace continues under the attempt
    assert ingest.attributes["http.response.status_code"] == 202
    assert route.attributes["hookstream.connectors"] == 1
    assert attempt.attributes["http.response.status_code"] == 204
    assert attempt.attributes["hookstream.attempt"] == 1
    assert attempt.attributes["hookstream.connector_id"] == con["id"]
    assert attempt.attributes["hookstream.outcome"] == "delivered"
    assert attempt.attributes["hookstream.webhook_id"] == receiver.received[0].headers[
        "webhook-id"]
    assert not attempt.error
    # The worker's batches are traces of their own, linked to the message's.
    for name in ("claim", "record"):
        [batch] = collector.named(name)
        assert batch.trace_id != GATEWAY_TRACE
        assert (GATEWAY_TRACE, ingest.span_id) in batch.links


async def test_a_failed_attempt_is_an_error_span_and_each_attempt_has_its_own(
    service: Service, receiver: Receiver, collector: Collector,
) -> None:
    receiver.respond = lambda _item, n: web.Response(status=503 if n == 1 else 204)
    org = await service.new_org()
    gw = await org.gateway()
    con = await org.connector(receiver.url, retry={"schedule": [0.1], "maxAttempts": 3})
    await org.trigger(con["id"], ["values"], [gw["id"]])
    resp = await org.ingest(gw["ingestToken"], "values", VALUE)  # no traceparent: a new trace
    assert resp.status_code == 202, resp.text
    await receiver.wait_for(2)
    await collector.wait_until(lambda: len(collector.named("POST values webhook")) == 2)
    first, second = sorted(collector.named("POST values webhook"),
                           key=lambda s: s.attributes["hookstream.attempt"])
    [ingest] = collector.named("POST /ingest/v1/values")
    assert first.trace_id == second.trace_id == ingest.trace_id
    assert first.parent_span_id == second.parent_span_id == ingest.span_id
    assert first.error and first.attributes["http.response.status_code"] == 503
    assert first.attributes["hookstream.outcome"] == "retry"
    assert not second.error and second.attributes["hookstream.outcome"] == "delivered"
    # Both attempts carry the one webhook-id; each names its own span.
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids[0] == ids[1]
    spans = [parse_traceparent(r.headers["traceparent"]) for r in receiver.received]
    assert [f"{s[1]:016x}" for s in spans if s] == [first.span_id, second.span_id]


async def test_with_tracing_off_the_gateways_traceparent_is_passed_on(
    settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    async with running_service(settings) as svc:
        assert svc.runtime.tracing is None
        org = await svc.new_org()
        gw = await org.gateway()
        con = await org.connector(receiver.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        auth = {"Authorization": f"Bearer {gw['ingestToken']}"}
        traced = await svc.client.post("/ingest/v1/values", json=VALUE,
                                       headers={**auth, "traceparent": GATEWAY_TRACEPARENT})
        plain = await svc.client.post("/ingest/v1/values", json=VALUE, headers=auth)
        bad = await svc.client.post("/ingest/v1/values", json=VALUE,
                                    headers={**auth, "traceparent": "not-a-traceparent"})
        assert [r.status_code for r in (traced, plain, bad)] == [202, 202, 202]
        await receiver.wait_for(3)
        by_message = {r.headers["webhook-id"]: r.headers.get("traceparent")
                      for r in receiver.received}
        assert by_message[traced.json()["ids"][0]] == GATEWAY_TRACEPARENT
        assert by_message[plain.json()["ids"][0]] is None
        assert by_message[bad.json()["ids"][0]] is None
