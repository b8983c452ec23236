"""OpenTelemetry traces of messages, from a gateway's request to each webhook attempt.

Off unless the standard variables ask for it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, or ``OTEL_TRACES_EXPORTER=otlp``; then spans go
over OTLP/HTTP (protobuf) through the SDK's batch processor, which reads the other ``OTEL_*``
variables itself (headers, timeout, ``OTEL_BSP_*``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``). ``OTEL_TRACES_EXPORTER=none`` or
``OTEL_SDK_DISABLED=true`` keeps it off. Off, nothing of OpenTelemetry is imported and a
message costs one ``is None`` test per step.

What a trace holds: the ingest span (HTTP ``POST /ingest/v1/{kind}``, a child of the gateway's
W3C ``traceparent`` when it sent one, or an MQTT publish), its routing span, and one span per
delivery attempt, each a child of the ingest span; the webhook carries a ``traceparent``
naming its attempt span, so the receiver's trace continues under it. The worker's claim and
record transactions are spans of their own, linked to every message they carried. The
messages of one request share its trace. With tracing off, a gateway's ``traceparent`` is
still passed on to the webhooks of its messages.

The W3C parsing and formatting here is pure; the SDK is used only by ``Tracing``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hookstream.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-"
                          r"(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?")
_MOST_LINKS = 128  # the SDK's own default limit of links per span


def parse_traceparent(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a W3C ``traceparent``; None when it is not one.

    Per the W3C rules: version ``ff`` and all-zero ids are invalid; a version 00 header has
    nothing after its flags; a later version may, and is read as version 00.
    """
    if value is None:
        return None
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None or m["version"] == "ff" or (m["version"] == "00" and m["rest"]):
        return None
    trace_id, span_id = int(m["trace"], 16), int(m["span"], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, int(m["flags"], 16)


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """The version 00 ``traceparent`` naming a span."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"


def passed_on(value: str | None) -> str | None:
    """A gateway's ``traceparent`` as kept with its messages when tracing is off."""
    parsed = parse_traceparent(value)
    return None if parsed is None else format_traceparent(*parsed)


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces (raises on an exporter we lack)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
                 if e.strip()]
    if exporters == ["none"]:
        return False
    unknown = [e for e in exporters if e != "otlp"]
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={','.join(unknown)}: hookstream exports traces with 'otlp' "
            "(over HTTP) or not at all ('none')"
        )
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    on = bool(exporters) or bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                 or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    if on and protocol.strip().lower() != "http/protobuf":
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: hookstream exports traces over "
            "'http/protobuf' only (a collector's port 4318)"
        )
    return on


class Tracing:
    """A process's spans; made by ``from_environ`` only when tracing is on."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace

        self.provider = provider
        self._tracer = provider.get_tracer("hookstream")
        self._trace = trace

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Tracing | None:
        """A ``Tracing`` exporting over OTLP/HTTP as the ``OTEL_*`` variables say, or None."""
        env = os.environ if environ is None else environ
        if not wanted(env):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "hookstream"}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def _context(self, traceparent: str | None) -> Any:
        parsed = parse_traceparent(traceparent)
        if parsed is None:
            return None
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        trace_id, span_id, flags = parsed
        remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
        return self._trace.set_span_in_context(NonRecordingSpan(remote))

    def _links(self, traceparents: Iterable[str | None]) -> list[Any]:
        from opentelemetry.trace import Link, SpanContext, TraceFlags

        links, seen = [], set()
        for value in traceparents:
            parsed = parse_traceparent(value)
            if parsed is None or parsed[:2] in seen:
                continue
            seen.add(parsed[:2])
            links.append(Link(SpanContext(parsed[0], parsed[1], is_remote=True,
                                          trace_flags=TraceFlags(parsed[2]))))
            if len(links) == _MOST_LINKS:
                break
        return links

    @contextmanager
    def span(self, name: str, *, parent: str | None = None, kind: str = "internal",
             attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        """A span, a child of the ``traceparent`` given (else a new trace), ended on exit."""
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind

        # No parent given: a trace of its own, whatever span the caller runs in.
        with self._tracer.start_as_current_span(
            name, context=self._context(parent) or Context(), kind=SpanKind[kind.upper()],
            attributes=dict(attributes or {}),
        ) as span:
            yield span

    def start(self, name: str, *, parent: str | None = None, kind: str = "internal",
              attributes: Mapping[str, Any] | None = None) -> Span:
        """A span the caller ends (``span.end()``): one that spans several awaits of others."""
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind

        return self._tracer.start_span(
            name, context=self._context(parent) or Context(), kind=SpanKind[kind.upper()],
            attributes=dict(attributes or {}))

    def batch_span(self, name: str, started_ns: int, traceparents: Iterable[str | None],
                   attributes: Mapping[str, Any] | None = None) -> None:
        """A span from ``started_ns`` to now in a trace of its own, linked to the messages it
        carried (a claim, a batch of outcomes)."""
        links = self._links(traceparents)
        if not links:
            return
        span = self._tracer.start_span(name, context=self._trace.set_span_in_context(
            self._trace.INVALID_SPAN), links=links, start_time=started_ns,
            attributes=dict(attributes or {}))
        span.end()

    @staticmethod
    def failed(span: Span, description: str) -> None:
        """Mark ``span`` as an error (an attempt that did not deliver)."""
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, description))

    @staticmethod
    def traceparent(span: Span) -> str:
        """The ``traceparent`` naming ``span`` (what its children and receivers continue)."""
        ctx = span.get_span_context()
        return format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))

    def shutdown(self) -> None:
        """Export what is buffered (the SDK gives up after its export timeout)."""
        self.provider.shutdown()


def now_ns() -> int:
    """Now, as span times are given."""
    return time.time_ns()
