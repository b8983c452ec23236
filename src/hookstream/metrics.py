"""Prometheus metrics (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
MQTT_CONNECTED = Gauge(
    "hookstream_mqtt_connected", "1 while this process's MQTT bridge is connected to the broker"
)
MQTT_DUPLICATES = Counter(
    "hookstream_mqtt_duplicates_total",
    "MQTT publishes recognised as a redelivery of one already stored, and not stored again",
)
