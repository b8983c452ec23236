"""A database that cannot be reached is a 503 with Retry-After, not a 500, and comes back."""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.support import Org, Service


def _admin_dsn(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    name = parsed.database or ""
    return parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    ), name


async def five_hundreds(service: Service) -> float:
    """hookstream_ingest_responses_total{status_class="5xx"} from the service's /metrics."""
    page = (await service.client.get("/metrics")).text
    return next(s.value for f in text_string_to_metric_families(page) for s in f.samples
                if s.name == "hookstream_ingest_responses_total"
                and s.labels == {"status_class": "5xx"})


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_ingest_answers_503_while_the_database_refuses_connections(
    service: Service, org: Org
) -> None:
    gw = await org.gateway()
    message = {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1}
    assert (await org.ingest(gw["ingestToken"], "values", message)).status_code == 202
    before = await five_hundreds(service)
    admin_dsn, name = _admin_dsn(service.settings.database_url)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        resp = await org.ingest(gw["ingestToken"], "values", message)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "database_unavailable"
        assert resp.headers["Retry-After"] == "1"
        listed = await org.api.get("/api/v1/gateways")
        assert listed.status_code == 503
        # What the HookstreamIngestErrors alert reads (deploy/prometheus).
        assert await five_hundreds(service) == before + 1
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert (await org.ingest(gw["ingestToken"], "values", message)).status_code == 202
