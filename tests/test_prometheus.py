"""deploy/prometheus: the alerting rules pass promtool, fire in its unit tests, and read metrics
that a running hookstream really exports, whose /metrics pages promtool finds no fault with.

promtool comes from Debian's prometheus package: on PATH, at HOOKSTREAM_PROMTOOL, or unpacked
into .cache/prometheus by .ci/run (installing the package would start a Prometheus server).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hookstream.pipeline.record.queue_sampler import QueueSampler
from hookstream.settings import Settings
from tests.conftest import unavailable
from tests.support import (
    ROOT,
    Org,
    Service,
    eventually,
    free_port,
    hookstream_cmd,
    running_receiver,
    settings_env,
    spawn,
    wait_ready,
)

DEPLOY = ROOT / "deploy" / "prometheus"
RULES = DEPLOY / "hookstream.rules.yml"
RULE_TESTS = DEPLOY / "hookstream.rules.test.yml"
CACHED_PROMTOOL = ROOT / ".cache" / "prometheus" / "usr" / "bin" / "promtool"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """A failed attempt waits an hour for its retry: its delivery stays in the queue gauges."""
    return {"retry_schedule": (3600.0,)}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = (os.environ.get("HOOKSTREAM_PROMTOOL") or shutil.which("promtool")
             or (str(CACHED_PROMTOOL) if CACHED_PROMTOOL.exists() else None))
    if found is None:
        unavailable("promtool", "it is neither on PATH nor in .cache/prometheus (.ci/run "
                    "unpacks it: apt-get download prometheus; dpkg -x prometheus_*.deb "
                    ".cache/prometheus)")
    assert found is not None
    return found


def run(args: list[str], *, stdin: str | None = None, cwd: Path = DEPLOY) -> tuple[int, str]:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


def alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_rules_pass_promtool_check(promtool: str) -> None:
    code, output = run([promtool, "check", "rules", RULES.name])
    assert code == 0, output
    assert f"SUCCESS: {len(alerts())} rules found" in output, output


def test_every_alert_says_what_is_wrong_and_what_to_do() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        for key in ("summary", "runbook"):
            text = rule["annotations"][key]
            assert text.strip() and "\n" not in text, f"{rule['alert']}: {key} is one line"
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]


def test_each_alert_fires_on_its_series_and_stays_quiet_otherwise(promtool: str) -> None:
    """promtool's unit tests (the summaries and runbooks as rendered) pass, and cover every
    alert both ways."""
    code, output = run([promtool, "test", "rules", RULE_TESTS.name])
    assert code == 0, output
    assert "SUCCESS" in output, output
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    for name in (rule["alert"] for rule in alerts()):
        fired = [c for c in cases if c["alertname"] == name and c["exp_alerts"]]
        quiet = [c for c in cases if c["alertname"] == name and not c["exp_alerts"]]
        assert fired and quiet, f"{name}: needs a case where it fires and one where it does not"


def test_the_example_scrape_configuration_passes_promtool_check(promtool: str) -> None:
    code, output = run([promtool, "check", "config", "prometheus.example.yml"])
    assert code == 0, output


def families(page: str) -> dict[str, set[str]]:
    """Each metric family of a /metrics page and the label names its samples carry."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(page):
        labels = found.setdefault(family.name, set())
        for sample in family.samples:
            labels.update(k for k in sample.labels if k not in {"le", "quantile"})
    return found


def check_metrics(promtool: str, page: str) -> None:
    """promtool's lint of an exposition: exit 0 and nothing said."""
    code, output = run([promtool, "check", "metrics"], stdin=page)
    assert code == 0 and not output.strip(), f"promtool check metrics:\n{output}"


def sample_keys(page: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(s.name, tuple(sorted(s.labels.items())))
            for f in text_string_to_metric_families(page) for s in f.samples}


async def test_the_api_process_metrics_pass_promtool_and_hold_what_the_rules_read(
    promtool: str, service: Service, org: Org
) -> None:
    """After traffic of every kind the rules watch (deliveries, a refusal, a 410 that switches
    a connector off, queue samples), the live page passes ``promtool check metrics``, and every
    metric and label the rules name is on it (no rule reads a name hookstream does not export)."""
    async with running_receiver(lambda _r, _n: web.Response(status=410)) as gone:
        gw = await org.gateway()
        con = await org.connector(gone.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        body = {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1}
        assert (await org.ingest(gw["ingestToken"], "values", body)).status_code == 202
        assert (await org.ingest("hsi_wrong", "values", body)).status_code == 401

        async def switched_off() -> bool:
            resp = await org.api.get(f"/api/v1/connectors/{con['id']}")
            return resp.json()["active"] is False

        await eventually(switched_off, what="the connector switched off by the 410")
    # A connector with a queue: nothing listens at its address, and its retry is an hour away.
    other = await org.connector("http://127.0.0.1:9/")
    await org.trigger(other["id"], ["events"], [gw["id"]])
    assert (await org.ingest(gw["ingestToken"], "events", body)).status_code == 202
    await QueueSampler(service.runtime.db, 5).sample()
    page = (await service.client.get("/metrics")).text
    check_metrics(promtool, page)

    exported = families(page)
    rules_text = RULES.read_text()
    used = set(re.findall(r"\b(hookstream_[a-z_]+)", rules_text))
    # The text parser names counters without _total.
    missing = {m for m in used if m not in exported and m.removesuffix("_total") not in exported}
    assert not missing, f"the rules read metrics hookstream does not export: {missing}"
    for family, label in [("hookstream_queue_oldest_due_seconds", "connector_id"),
                          ("hookstream_queue_depth", "connector_id"),
                          ("hookstream_delivery_attempts", "outcome"),
                          ("hookstream_ingest_responses", "status_class")]:
        assert label in exported[family], f"{family} has no {label} label: {exported[family]}"


# The page's format does not depend on the database: one backend is enough.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_serve_with_worker_processes_and_a_bridge_process_pass_promtool(
    promtool: str, settings: Settings, tmp_path: Path
) -> None:
    """The other two ways /metrics is made: ``serve`` with a worker process (prometheus_client's
    multiprocess mode) and a ``hookstream mqtt`` process's own port. Only the bridge has a
    hookstream_mqtt_connected sample: the alert on 0 never names a process without one."""
    port, metrics_port = free_port(), free_port()
    serve_log, mqtt_log = tmp_path / "serve.log", tmp_path / "mqtt.log"
    serve = spawn(hookstream_cmd("serve"), settings_env(
        settings, HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", HOOKSTREAM_WORKERS="1"), serve_log)
    bridge = spawn(hookstream_cmd("mqtt"), settings_env(
        settings, HOOKSTREAM_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",  # no broker there
        HOOKSTREAM_METRICS_LISTEN=f"127.0.0.1:{metrics_port}"), mqtt_log)
    try:
        await wait_ready(serve, serve_log, url=f"http://127.0.0.1:{port}/readyz",
                         what="hookstream serve")
        await wait_ready(bridge, mqtt_log, url=f"http://127.0.0.1:{metrics_port}/healthz",
                         what="hookstream mqtt's /healthz")
        async with httpx.AsyncClient() as client:
            served = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            bridged = ""

            async def bridge_sampled() -> bool:  # from the moment the bridge starts
                nonlocal bridged
                bridged = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                return "hookstream_mqtt_connected{" in bridged

            await eventually(bridge_sampled, what="the bridge's hookstream_mqtt_connected")
    finally:
        for proc in (serve, bridge):
            proc.send_signal(signal.SIGTERM)
        for proc in (serve, bridge):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    check_metrics(promtool, served)
    check_metrics(promtool, bridged)
    assert "hookstream_ingest_responses_total" in served  # the workers' and the API's, merged
    assert not [k for k in sample_keys(served) if k[0] == "hookstream_mqtt_connected"]
    assert [k for k in sample_keys(bridged) if k[0] == "hookstream_mqtt_connected"] == [
        ("hookstream_mqtt_connected", (("client_id", "hookstream-bridge"),))]
