"""Prometheus metrics: served at ``/metrics`` by the API, and on ``HOOKSTREAM_METRICS_LISTEN`` by
processes without one (``hookstream worker``, ``hookstream mqtt``). ``serve`` with worker
processes shares them through prometheus_client's multiprocess mode (``exposition``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MESSAGES_INGESTED = Counter(
    "hookstream_messages_ingested_total", "Messages accepted and stored, by kind", ["kind"]
)
DELIVERIES_ROUTED = Counter(
    "hookstream_deliveries_routed_total", "Deliveries created by routing, by kind", ["kind"]
)
DELIVERY_ATTEMPTS = Counter(
    "hookstream_delivery_attempts_total",
    "Delivery attempts by outcome (delivered, retry, failed)",
    ["outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "hookstream_delivery_attempt_seconds",
    "Duration of one POST to a receiver",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INGEST_REJECTED = Counter(
    "hookstream_ingest_rejected_total", "Ingest requests refused, by reason", ["reason"]
)
MQTT_REFUSED = Counter(
    "hookstream_mqtt_refused_total",
    "MQTT messages refused by the bridge (published to hookstream/{gatewayId}/errors), by reason",
    ["reason"],
)
# Labelled so that only a process running a bridge has a sample: an alert on 0 names a bridge,
# never an API or worker process (which have no bridge to be disconnected).
MQTT_CONNECTED = Gauge(
    "hookstream_mqtt_connected",
    "1 while this process's MQTT bridge is connected to the broker, by the bridge's client id",
    ["client_id"],
    multiprocess_mode="livemax",
)
MQTT_DUPLICATES = Counter(
    "hookstream_mqtt_duplicates_total",
    "MQTT publishes recognised as a redelivery of one already stored, and not stored again",
)
ATTEMPT_STATUS = Counter(
    "hookstream_delivery_attempt_status_total",
    "Delivery attempts by answer: 2xx, 3xx, 4xx, 5xx, timeout, connection_error, refused",
    ["status_class"],
)
INGEST_RESPONSES = Counter(
    "hookstream_ingest_responses_total",
    "Answers to POST /ingest/v1/{kind}, by status class (2xx, 4xx, 5xx)",
    ["status_class"],
)
# Present at 0 from the start: rate() and increase() see the first 5xx (a series born at 1
# shows no increase).
for _class in ("2xx", "4xx", "5xx"):
    INGEST_RESPONSES.labels(_class)
CONNECTORS_DEACTIVATED = Counter(
    "hookstream_connectors_deactivated_total",
    "Connectors switched off by hookstream (a 410 Gone, or every attempt failing too long)",
)
DELIVERY_LATENCY = Histogram(
    "hookstream_delivery_latency_seconds",
    "From a message's acceptance to its delivery (2xx), retries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200),
)


def status_class(status_code: int | None, *, timed_out: bool, refused: bool) -> str:
    """The ``status_class`` label of one attempt, from its status and what failed (the
    attempt's ``timed_out`` and ``refused`` flags, not its error text)."""
    if status_code is not None:
        return f"{min(max(status_code // 100, 1), 5)}xx"
    if timed_out:
        return "timeout"
    if refused:
        return "refused"
    return "connection_error"


class QueueCollector(Collector):
    """Queue depth and the age of the oldest due delivery per connector, as last sampled.

    Sampled from the database every few seconds (``record.queue_sampler``), not at scrape
    time: a scrape never waits on the database.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, float]] = []  # connector id, depth, oldest due (s)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "hookstream_queue_depth",
            "Pending deliveries (due, scheduled for a retry, or in flight), per connector",
            labels=["connector_id"],
        )
        age = GaugeMetricFamily(
            "hookstream_queue_oldest_due_seconds",
            "How long the oldest due, unclaimed delivery has waited, per connector",
            labels=["connector_id"],
        )
        for connector_id, count, oldest in self.rows:
            depth.add_metric([connector_id], count)
            age.add_metric([connector_id], oldest)
        yield depth
        yield age


QUEUE = QueueCollector()
REGISTRY.register(QUEUE)


def exposition() -> bytes:
    """What ``/metrics`` answers: this process's metrics, or, when ``serve`` runs workers in
    child processes (prometheus_client's multiprocess mode), every process's together."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(QUEUE)
    return generate_latest(registry)
