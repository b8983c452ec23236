"""A database that cannot be reached is a 503 with Retry-After, not a 500, and comes back."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support import Org, Service


def _admin_dsn(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    name = parsed.database or ""
    return parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    ), name


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_ingest_answers_503_while_the_database_refuses_connections(
    service: Service, org: Org
) -> None:
    gw = await org.gateway()
    message = {"deviceId": "d", "property": "p", "timestamp": 1, "payload": 1}
    assert (await org.ingest(gw["ingestToken"], "values", message)).status_code == 202
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
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert (await org.ingest(gw["ingestToken"], "values", message)).status_code == 202
