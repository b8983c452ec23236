"""/metrics and structured logs, as an operator scrapes and reads them."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hookstream.metrics import status_class
from hookstream.pipeline.deliver.client import AttemptResult
from hookstream.pipeline.record.queue_sampler import QueueSampler
from hookstream.settings import Settings
from tests.support import (
    Org,
    Received,
    Service,
    eventually,
    free_port,
    hookstream_cmd,
    running_receiver,
    running_service,
    settings_env,
    spawn,
    wait_ready,
)


def value(i: int) -> dict[str, Any]:
    return {"deviceId": "dev-1", "property": "energy", "timestamp": 1_767_225_600_000 + i,
            "payload": i}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: httpx.AsyncClient, url: str = "/metrics") -> dict[Any, float]:
    resp = await client.get(url)
    assert resp.status_code == 200
    return samples(resp.text)


@pytest.mark.parametrize(("status", "timed_out", "refused", "label"), [
    (200, False, False, "2xx"), (204, False, False, "2xx"), (301, False, False, "3xx"),
    (404, False, False, "4xx"), (503, False, False, "5xx"), (101, False, False, "1xx"),
    (600, False, False, "5xx"),
    (None, True, False, "timeout"), (None, False, True, "refused"),
    (None, False, False, "connection_error"),
    (401, True, False, "4xx"),  # a status wins: the receiver answered
])
def test_status_class_labels(status: int | None, timed_out: bool, refused: bool,
                             label: str) -> None:
    assert status_class(status, timed_out=timed_out, refused=refused) == label


def test_status_class_reads_the_flags_not_the_error_text() -> None:
    """An OAuth2 token request that timed out is a timeout, though its error text begins
    "OAuth2 token request failed"; text that merely begins "TimeoutError" is not one."""
    assert status_class(None, timed_out=True, refused=False) == "timeout"
    result = AttemptResult(0.0, 5, error="OAuth2 token request failed: no complete answer "
                           "within the timeout", timed_out=True)
    assert status_class(result.status_code, timed_out=result.timed_out,
                        refused=result.refused) == "timeout"
    text_only = AttemptResult(0.0, 5, error="TimeoutError: made up")
    assert status_class(text_only.status_code, timed_out=text_only.timed_out,
                        refused=text_only.refused) == "connection_error"


async def test_queue_depth_and_oldest_due_age_per_connector(settings: Settings) -> None:
    async with running_service(settings, worker=False) as svc, running_receiver() as rec:
        org = await svc.new_org()
        gw = await org.gateway()
        busy = await org.connector(rec.url)
        idle = await org.connector(rec.url)
        await org.trigger(busy["id"], ["values"], [gw["id"]])
        await org.trigger(idle["id"], ["events"], [gw["id"]])
        resp = await org.ingest(gw["ingestToken"], "values", [value(i) for i in range(3)])
        assert resp.status_code == 202
        await asyncio.sleep(0.3)  # deliberate interval: the oldest due delivery is 0.3 s old
        await QueueSampler(svc.runtime.db, 5).sample()
        page = await scrape(svc.client)
        await org.api.aclose()
    assert page[("hookstream_queue_depth", (("connector_id", busy["id"]),))] == 3
    assert page[("hookstream_queue_oldest_due_seconds", (("connector_id", busy["id"]),))] >= 0.3
    assert ("hookstream_queue_depth", (("connector_id", idle["id"]),)) not in page


async def test_attempts_by_status_class_and_delivery_latency(service: Service, org: Org) -> None:
    async def flaky(_: Received, n: int) -> web.Response:
        return web.Response(status=503 if n == 1 else 204)

    before = await scrape(service.client)
    async with running_receiver(flaky) as rec:
        gw = await org.gateway()
        con = await org.connector(rec.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        await org.ingest(gw["ingestToken"], "values", value(1))
        await rec.wait_for(2)
        after: dict[Any, float] = {}

        def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
            return after.get((name, labels), 0) - before.get((name, labels), 0)

        async def delivered_counted() -> bool:  # the worker reads the answer after we send it
            after.update(await scrape(service.client))
            return grew("hookstream_delivery_latency_seconds_count") >= 1

        await eventually(delivered_counted, what="the delivery counted in /metrics")

    assert grew("hookstream_delivery_attempt_status_total", (("status_class", "5xx"),)) == 1
    assert grew("hookstream_delivery_attempt_status_total", (("status_class", "2xx"),)) == 1
    assert grew("hookstream_delivery_latency_seconds_count") == 1
    # The retry waited 0.2 s (the test schedule): the latency counts it.
    assert grew("hookstream_delivery_latency_seconds_bucket", (("le", "0.1"),)) == 0
    assert grew("hookstream_messages_ingested_total", (("kind", "values"),)) == 1


async def test_ingest_answers_and_connectors_switched_off_are_counted(
    service: Service, org: Org
) -> None:
    """What the alerting rules read: ingest answers by status class, and connectors that
    hookstream switched off (here by a 410 Gone)."""
    before = await scrape(service.client)
    after: dict[Any, float] = {}

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    async with running_receiver(lambda _r, _n: web.Response(status=410)) as gone:
        gw = await org.gateway()
        con = await org.connector(gone.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        assert (await org.ingest(gw["ingestToken"], "values", value(1))).status_code == 202
        assert (await org.ingest("hsi_not_a_token", "values", value(2))).status_code == 401

        async def counted() -> bool:  # once the worker committed the switch-off
            after.update(await scrape(service.client))
            return grew("hookstream_connectors_deactivated_total") >= 1

        await eventually(counted, what="the switched-off connector counted in /metrics")
    connector = await org.api.get(f"/api/v1/connectors/{con['id']}")
    assert connector.json()["active"] is False
    assert grew("hookstream_connectors_deactivated_total") == 1
    assert grew("hookstream_ingest_responses_total", (("status_class", "2xx"),)) == 1
    assert grew("hookstream_ingest_responses_total", (("status_class", "4xx"),)) == 1
    # Present at 0 before any 5xx, so that rate() sees the first one.
    assert ("hookstream_ingest_responses_total", (("status_class", "5xx"),)) in after
    assert grew("hookstream_ingest_responses_total", (("status_class", "5xx"),)) == 0


async def test_a_worker_process_logs_json_lines_with_ids_and_serves_metrics(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(settings, HOOKSTREAM_LOG_FORMAT="json",
                       HOOKSTREAM_METRICS_LISTEN=f"127.0.0.1:{port}")
    log = tmp_path / "worker.log"

    async def failing(_: Received, __: int) -> web.Response:
        return web.Response(status=500)

    async with running_service(settings, worker=False) as svc, running_receiver(failing) as rec:
        org = await svc.new_org()
        gw = await org.gateway()
        con = await org.connector(rec.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        (message_id,) = (await org.ingest(gw["ingestToken"], "values", value(1))).json()["ids"]
        worker = spawn(hookstream_cmd("worker"), env, log)
        try:
            await wait_ready(worker, log, url=f"http://127.0.0.1:{port}/readyz",
                             what="hookstream worker")
            await rec.wait_for(1)
            async with httpx.AsyncClient() as client:
                health = await client.get(f"http://127.0.0.1:{port}/healthz")
                assert health.status_code == 200 and health.json() == {"status": "ok"}
                ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                assert ready.json() == {"status": "ready", "roles": {"worker": "ready"}}
                async def scraped() -> bool:
                    try:
                        page = await scrape(client, f"http://127.0.0.1:{port}/metrics")
                    except httpx.TransportError:
                        return False
                    key = ("hookstream_delivery_attempt_status_total", (("status_class", "5xx"),))
                    return page.get(key, 0) >= 1

                await eventually(scraped, timeout=15)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(worker.wait, 20)
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(10)
                await org.api.aclose()
        assert code == 0, "the worker did not stop cleanly on SIGTERM"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    attempt = next(r for r in lines if r.get("message_id") == message_id)
    assert attempt["connector_id"] == con["id"] and attempt["status_code"] == 500
    assert attempt["delivery_id"].startswith("dlv_") and attempt["outcome"] == "retry"
    assert attempt["level"] == "INFO" and "time" in attempt
    # Nothing is logged as text (the banner on standard output is not a log record).
    assert not [ln for ln in log.read_text().splitlines()
                if re.match(r"^\d{4}-\d\d-\d\d .* (INFO|WARNING|ERROR) ", ln)]


async def test_an_mqtt_bridge_without_its_broker_is_alive_but_not_ready(
    settings: Settings, tmp_path: Path
) -> None:
    """/healthz answers at once; /readyz says 503 and what it waits for, until subscribed."""
    port = free_port()
    env = settings_env(settings, HOOKSTREAM_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
                       HOOKSTREAM_METRICS_LISTEN=f"127.0.0.1:{port}")
    log = tmp_path / "mqtt.log"
    bridge = spawn(hookstream_cmd("mqtt"), env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(bridge, log, url=f"{base}/healthz", what="hookstream mqtt's /healthz")
        async with httpx.AsyncClient(base_url=base) as client:
            ready = await client.get("/readyz")
            missing = await client.get("/nowhere")
            connected: dict[Any, float] = {}

            async def bridge_sampled() -> bool:  # from the moment the bridge starts
                page = await scrape(client)
                connected.update((k, v) for k, v in page.items()
                                 if k[0] == "hookstream_mqtt_connected")
                return bool(connected)

            await eventually(bridge_sampled, what="the bridge's hookstream_mqtt_connected")
    finally:
        bridge.send_signal(signal.SIGTERM)  # its handlers are in place before /healthz serves
        code = await asyncio.to_thread(bridge.wait, 60)
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "starting", "roles": {"mqtt": "starting"},
        "error": {"code": "not_ready", "message": "waiting for mqtt: the broker to acknowledge "
                                                  "the bridge's subscriptions"},
    }
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # One sample, named by the bridge's client id: 0, as it never reached its broker.
    assert connected == {("hookstream_mqtt_connected", (("client_id", "hookstream-bridge"),)): 0}
    assert code == 0, log.read_text()[-3000:]
    assert "hookstream ready" not in log.read_text()
