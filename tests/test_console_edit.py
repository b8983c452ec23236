"""The console's connector edit, audit log page and a connector's charts, without a browser.

Edits go through the same model and service as the API's PATCH: what a valid edit changes is
what the next webhook looks like on a real receiver; an invalid one shows the API's own
message next to its field and changes nothing; a credential or header value left empty stays.
The charts' figures are checked against attempts written with known times and durations.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from hookstream.ids import now_ms
from hookstream.pipeline.record.rollup import counted
from hookstream.services.activity import BUCKET_MS, connector_activity, percentile
from hookstream.storage.repository import Repository
from tests.console_support import browser, make_user, sign_in
from tests.support import Org, Received, Receiver, Service, eventually, running_receiver
from tests.test_console_pages import CSP, Console, field_error, input_value

EMAIL = "ana@acme.example"


@pytest.fixture
async def console(service: Service, org: Org) -> AsyncIterator[Console]:
    await make_user(service, org.id, EMAIL)
    async with browser(service) as web_:
        assert (await sign_in(web_, EMAIL)).status_code == 303
        yield Console(service, web_, EMAIL)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def updates(org: Org, connector_id: str) -> list[dict[str, Any]]:
    events = (await org.api.get("/api/v1/audit-events", params={
        "targetId": connector_id, "action": "connector.updated"})).json()["items"]
    return list(events)


class Sender:
    """Sends values from one gateway and says where each arrived."""

    def __init__(self, org: Org, token: str, receivers: list[Receiver]) -> None:
        self.org, self.token, self.receivers = org, token, receivers
        self.n = 0

    def arrived(self) -> int:
        return sum(len(r.received) for r in self.receivers)

    async def one(self) -> tuple[Receiver, Received]:
        """Send a value; (the receiver it arrived at, the request)."""
        before = self.arrived()
        self.n += 1
        sent = await self.org.ingest(self.token, "values", {
            "deviceId": "boiler-1", "property": "t", "timestamp": self.n, "payload": self.n})
        assert sent.status_code == 202, sent.text

        async def came() -> bool:
            return self.arrived() > before

        await eventually(came, what="the webhook at a receiver")
        for receiver in self.receivers:
            for request in receiver.received:
                if request.headers.get("webhook-id") == sent.json()["ids"][0]:
                    return receiver, request
        raise AssertionError("the webhook arrived under another id")

    async def until(self, receiver: Receiver, check: Any = None) -> Received:
        """Send until a webhook arrives at ``receiver`` (and passes ``check``): a worker
        trusts its copy of a connector for a couple of seconds after an edit."""
        for _ in range(200):
            where, request = await self.one()
            if where is receiver and (check is None or check(request)):
                return request
        raise AssertionError("the edit never reached the webhooks")


# --- edit -------------------------------------------------------------------------------------

async def test_an_edit_changes_what_the_next_webhook_looks_like_and_keeps_blank_secrets(
    console: Console, org: Org, receiver: Receiver
) -> None:
    async with running_receiver() as new:
        gateway = await org.gateway()
        connector = await org.connector(
            receiver.url, name="Old", authentication={
                "type": "basic", "username": "hook", "password": "pa55 word"},
            headers={"X-Tenant": "acme-secret-tenant"})
        cid = connector["id"]
        await org.trigger(cid, ["values"])
        send = Sender(org, gateway["ingestToken"], [receiver, new])
        where, first = await send.one()
        assert where is receiver and first.path == "/values"
        assert first.headers["Authorization"] == basic("hook", "pa55 word")

        # The form shows the connector's values, never a secret.
        form = await console.get(f"/console/connectors/{cid}/edit")
        assert form.status_code == 200 and form.headers["content-security-policy"] == CSP
        assert input_value(form.text, "baseUrl") == receiver.url
        assert input_value(form.text, "routes.values") == "/values"
        assert input_value(form.text, "authentication.username") == "hook"
        assert input_value(form.text, "authentication.password") == ""
        assert input_value(form.text, "headers.0.name") == "X-Tenant"
        assert input_value(form.text, "headers.0.value") == ""
        assert '<option value="basic" selected>' in form.text
        assert "pa55" not in form.text and "acme-secret-tenant" not in form.text

        # Where and how it delivers changes; the password and the header value are kept.
        saved = await console.post(f"/console/connectors/{cid}/edit", {
            "name": "New", "baseUrl": new.url, "routes.values": "/v2/values",
            "routes.events": "/events", "routes.alarms": "/alarms",
            "authentication.type": "basic", "authentication.username": "hook2",
            "authentication.password": "", "headers.0.name": "X-Tenant", "headers.0.value": "",
            "headers.1.name": "X-Extra", "headers.1.value": "extra-value",
            "retry.schedule": "0.1, 0.2", "retry.maxAttempts": "4", "timeouts.connect": "1.5",
            "timeouts.total": "", "limits.maxConcurrency": "", "limits.perSecond": "50",
            "ordering": "per_device", "batch.maxMessages": "", "batch.maxWaitMs": "",
        })
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"] == f"/console/connectors/{cid}?done=connector-saved"
        page = await console.get(saved.headers["location"])
        assert "The connector was saved" in page.text
        got = (await org.api.get(f"/api/v1/connectors/{cid}")).json()
        assert got["name"] == "New" and got["baseUrl"] == new.url
        assert got["routes"] == {"values": "/v2/values", "events": "/events",
                                 "alarms": "/alarms"}
        assert got["authentication"] == {"type": "basic", "username": "hook2"}
        assert got["headerNames"] == ["X-Extra", "X-Tenant"]
        assert got["retry"] == {"schedule": [0.1, 0.2], "maxAttempts": 4}
        assert got["timeouts"]["connect"] == 1.5
        assert got["timeouts"]["total"] == console.service.settings.request_timeout
        assert got["limits"]["perSecond"] == 50 and got["ordering"] == "per_device"
        assert got["batch"] is None
        (event,) = await updates(org, cid)
        assert event["actor"] == f"user:{EMAIL}"
        assert event["details"]["fields"] == [
            "authentication", "baseUrl", "headers", "limits", "name", "ordering", "retry",
            "routes", "timeouts"]
        assert "pa55" not in str(event) and "acme-secret-tenant" not in str(event)

        arrived = await send.until(new)
        assert arrived.path == "/v2/values"
        assert arrived.headers["Authorization"] == basic("hook2", "pa55 word")
        assert arrived.headers["X-Tenant"] == "acme-secret-tenant"
        assert arrived.headers["X-Extra"] == "extra-value"

        # A new credential, a header removed: the next webhooks show both.
        form = await console.get(f"/console/connectors/{cid}/edit")
        assert input_value(form.text, "retry.schedule") == "0.1, 0.2"
        assert input_value(form.text, "timeouts.total") == ""  # the default, as placeholder
        rows = {input_value(form.text, f"headers.{i}.name") for i in range(2)}
        assert rows == {"X-Extra", "X-Tenant"}
        tenant_row = 0 if input_value(form.text, "headers.0.name") == "X-Tenant" else 1
        values = _form_fields(form.text)
        values.update({"authentication.type": "bearer", "authentication.token": "tok-2",
                       f"headers.{tenant_row}.remove": "on"})
        saved = await console.post(f"/console/connectors/{cid}/edit", values)
        assert saved.status_code == 303, saved.text
        second = (await updates(org, cid))[-1]
        assert second["details"]["fields"] == ["authentication", "headers"]
        got = (await org.api.get(f"/api/v1/connectors/{cid}")).json()
        assert got["authentication"] == {"type": "bearer"} and got["headerNames"] == ["X-Extra"]
        arrived = await send.until(
            new, lambda r: r.headers.get("Authorization") == "Bearer tok-2")
        assert "X-Tenant" not in arrived.headers and arrived.headers["X-Extra"] == "extra-value"

        # Saving the form as it is changes nothing, and audits nothing.
        form = await console.get(f"/console/connectors/{cid}/edit")
        assert (await console.post(f"/console/connectors/{cid}/edit",
                                   _form_fields(form.text))).status_code == 303
        assert len(await updates(org, cid)) == 2
        assert (await org.api.get(f"/api/v1/connectors/{cid}")).json() == got

        # Every attempt of this test is on the connector's chart.
        attempts = sum(d["attemptCount"] for d in await org.deliveries(connectorId=cid))
        page = await console.get(f"/console/connectors/{cid}")
        assert f"In all: {attempts} delivered, 0 refused (not 2xx), 0 no answer" in page.text


def _form_fields(page: str) -> dict[str, str]:
    """The text inputs and selected options of a form page, as a browser would post them."""
    fields: dict[str, str] = {}
    for name, value in re.findall(r'name="([^"]+)" type="(?:text|url|password)"\s+value="([^"]*)"',
                                  page):
        fields[html.unescape(name)] = html.unescape(value)
    for name, body in re.findall(r'<select id="[^"]*" name="([^"]+)"[^>]*>(.*?)</select>', page,
                                 re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        if chosen:
            fields[name] = html.unescape(chosen.group(1))
    fields.pop("csrf_token", None)
    return fields


async def test_an_invalid_edit_shows_the_apis_errors_and_changes_nothing(
    console: Console, org: Org, receiver: Receiver
) -> None:
    connector = await org.connector(receiver.url, authentication={
        "type": "basic", "username": "hook", "password": "keep-me"})
    cid = connector["id"]
    before = (await org.api.get(f"/api/v1/connectors/{cid}")).json()
    form = _form_fields((await console.get(f"/console/connectors/{cid}/edit")).text)

    async def refused(**changes: str) -> str:
        page = await console.post(f"/console/connectors/{cid}/edit", {**form, **changes})
        assert page.status_code == 422, page.text
        assert "keep-me" not in page.text
        return page.text

    # The API's own messages, under the fields that caused them.
    text = await refused(baseUrl="ftp://files.example", **{"timeouts.connect": "100",
                                                           "routes.values": "values"})
    assert field_error(text, "baseUrl") == "Must be an http:// or https:// URL with a host."
    assert field_error(text, "timeouts.connect") == "Input should be less than or equal to 60."
    assert "starts with '/'" in field_error(text, "routes.values")
    assert input_value(text, "baseUrl") == "ftp://files.example"  # what was typed is kept
    api = (await org.api.patch(f"/api/v1/connectors/{cid}",
                               json={"timeouts": {"connect": 100}})).json()["error"]
    assert api["details"][0] == {"field": "timeouts.connect", "message":
                                 "'timeouts.connect': Input should be less than or equal to 60"}

    text = await refused(**{"authentication.username": "a:b"})
    assert field_error(text, "authentication.username") == (
        "A basic-auth username cannot contain ':'.")
    text = await refused(**{"authentication.type": "bearer", "authentication.token": ""})
    assert field_error(text, "authentication.token") == "Required."
    text = await refused(**{"headers.0.name": "Content-Type", "headers.0.value": "x"})
    assert "set by hookstream" in field_error(text, "headers")
    text = await refused(**{"headers.0.name": "X-New"})
    assert field_error(text, "headers.0.value") == "Give the header's value."
    text = await refused(**{"retry.schedule": "5, soon", "limits.maxConcurrency": "2.5",
                            "batch.maxWaitMs": "10"})
    assert field_error(text, "retry.schedule").startswith("Give seconds separated by commas")
    assert field_error(text, "limits.maxConcurrency") == "Must be a whole number."
    text = await refused(**{"batch.maxWaitMs": "10"})
    assert field_error(text, "batch.maxMessages") == "Required."
    text = await refused(**{"retry.schedule": "5, -1"})
    assert field_error(text, "retry.schedule") == "Each delay is 0 to 604800 seconds (7 days)."
    text = await refused(name="")
    assert field_error(text, "name") == "Required."

    assert (await org.api.get(f"/api/v1/connectors/{cid}")).json() == before
    assert await updates(org, cid) == []
    # Nor was the password touched: it still signs in at the receiver.
    gateway = await org.gateway()
    await org.trigger(cid, ["values"])
    _, request = await Sender(org, gateway["ingestToken"], [receiver]).one()
    assert request.headers["Authorization"] == basic("hook", "keep-me")


@pytest.mark.parametrize("settings_overrides", [{"allow_private_targets": False}])
async def test_an_edit_to_a_refused_target_is_named_under_the_base_url(
    console: Console, org: Org
) -> None:
    connector = await org.connector("https://hooks.example.com", active=False)
    form = _form_fields((await console.get(f"/console/connectors/{connector['id']}/edit")).text)
    page = await console.post(f"/console/connectors/{connector['id']}/edit",
                              {**form, "baseUrl": "http://169.254.169.254/"})
    assert page.status_code == 422
    assert "HOOKSTREAM_ALLOW_PRIVATE_TARGETS" in field_error(page.text, "baseUrl")
    got = (await org.api.get(f"/api/v1/connectors/{connector['id']}")).json()
    assert got["baseUrl"] == "https://hooks.example.com"


async def test_an_edit_needs_the_csrf_token_and_the_connector_of_the_organization(
    service: Service, console: Console, org: Org, receiver: Receiver
) -> None:
    connector = await org.connector(receiver.url)
    cid = connector["id"]
    form = _form_fields((await console.get(f"/console/connectors/{cid}/edit")).text)
    for token in ("", "x" * 43):
        page = await console.post(f"/console/connectors/{cid}/edit",
                                  {**form, "name": "Sneaky"}, token=token)
        assert page.status_code == 403
    other = await service.new_org("Globex")
    theirs = await other.connector(receiver.url, name="Globex receiver")
    assert (await console.get(f"/console/connectors/{theirs['id']}/edit")).status_code == 404
    page = await console.post(f"/console/connectors/{theirs['id']}/edit",
                              {**form, "name": "Sneaky"})
    assert page.status_code == 404 and "Globex" not in page.text
    assert (await org.api.get(f"/api/v1/connectors/{cid}")).json()["name"] == "receiver"
    assert (await other.api.get(f"/api/v1/connectors/{theirs['id']}")).json()[
        "name"] == "Globex receiver"
    assert await updates(org, cid) == [] and await updates(other, theirs["id"]) == []


# --- the audit log page -------------------------------------------------------------------------

def audit_rows(page: str) -> list[tuple[str, str, str]]:
    """(actor, action, resource id) of each row, top to bottom."""
    rows = re.findall(
        r'data-label="Actor">([^<]*)</td>\s*<td class="nowrap" data-label="Action">'
        r'<code>([^<]*)</code></td>\s*<td data-label="Resource">(?:<a [^>]*>)?([^<]*)', page)
    return [(html.unescape(a), b, c) for a, b, c in rows]


async def test_the_audit_log_page_filters_pages_and_shows_only_the_organization(
    service: Service, console: Console, org: Org, receiver: Receiver
) -> None:
    gateway = await org.gateway("Tower")
    connector = await org.connector(receiver.url)
    for i in range(52):
        assert (await org.api.patch(f"/api/v1/gateways/{gateway['id']}",
                                    json={"name": f"Tower {i}"})).status_code == 200
    saved = await console.post(f"/console/connectors/{connector['id']}/active",
                               {"active": "false"})
    assert saved.status_code == 303
    other = await service.new_org("Globex")
    theirs = await other.gateway("Globex Tower")

    page = await console.get("/console/audit")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    rows = audit_rows(page.text)
    assert len(rows) == 50
    # Newest first: the console's toggle, then the API's renames.
    assert rows[0] == (f"user:{EMAIL}", "connector.updated", connector["id"])
    assert rows[1] == ("api_key", "gateway.updated", gateway["id"])
    assert theirs["id"] not in page.text and "Globex" not in page.text
    older = re.search(r'<a class="button secondary small" href="([^"]+)">Older', page.text)
    assert older
    rest = audit_rows((await console.get(html.unescape(older.group(1)))).text)
    assert [r[1] for r in rest] == ["gateway.updated"] * 3 + [
        "connector.created", "gateway.created"]

    by_actor = audit_rows((await console.get("/console/audit", actor=f"user:{EMAIL}")).text)
    assert by_actor == [(f"user:{EMAIL}", "connector.updated", connector["id"])]
    by_type = audit_rows((await console.get("/console/audit", targetType="connector")).text)
    assert [r[1] for r in by_type] == ["connector.updated", "connector.created"]
    by_action = audit_rows((await console.get("/console/audit",
                                              action="gateway.created")).text)
    assert by_action == [("api_key", "gateway.created", gateway["id"])]
    by_id = audit_rows((await console.get("/console/audit", targetId=connector["id"])).text)
    assert len(by_id) == 2
    future = await console.get("/console/audit", since="2999-01-01T00:00")
    assert future.status_code == 200 and "No change matches these filters" in future.text
    past = audit_rows((await console.get("/console/audit", until="2000-01-01T00:00")).text)
    assert past == []
    # Their ids find nothing of theirs.
    theirs_page = await console.get("/console/audit", targetId=theirs["id"])
    assert "No change matches these filters" in theirs_page.text

    bad = await console.get("/console/audit", since="soon", targetType="planet")
    assert bad.status_code == 422
    assert field_error(bad.text, "targetType").startswith("Not one of")
    bad = await console.get("/console/audit", since="soon")
    assert bad.status_code == 422 and "RFC 3339" in field_error(bad.text, "since")
    bad = await console.get("/console/audit", cursor="not-ours")
    assert bad.status_code == 422 and "Invalid cursor." in bad.text


# --- the charts ---------------------------------------------------------------------------------

async def seed(service: Service, connector_id: str,
               attempts: list[tuple[int, int | None, int]]) -> None:
    """Attempts of the connector, (started_at ms, status code or None, duration ms), counted
    as the recorder counts the attempts it writes (``record.rollup``)."""
    async with service.runtime.db.write() as conn:
        await Repository(conn).add_attempt_counts(
            counted((connector_id, started, status, duration)
                    for started, status, duration in attempts))


async def test_the_charts_figures_are_the_seeded_attempts(
    service: Service, console: Console, org: Org
) -> None:
    connector = await org.connector("https://hooks.example.com", active=False)
    cid = connector["id"]
    # A new connector's charts say there is nothing yet, and stay accessible.
    page = await console.get(f"/console/connectors/{cid}")
    assert page.headers["content-security-policy"] == CSP
    for chart in ("chart-attempts", "chart-latency"):
        svg = re.search(rf'<svg class="chart" id="{chart}"[^>]*>.*?</svg>', page.text, re.S)
        assert svg, page.text
        assert f'role="img" aria-labelledby="{chart}-title {chart}-desc"' in svg.group(0)
        assert f'<title id="{chart}-title">' in svg.group(0)
        assert "No attempts in the last 24 hours" in svg.group(0)
        assert "<rect" not in svg.group(0) and "<path" not in svg.group(0)
    assert "<script>" not in page.text and "http://www.w3.org" not in page.text

    now = now_ms()
    bucket = now // BUCKET_MS * BUCKET_MS  # the current bucket, the chart's last
    earlier = bucket - 3 * 3600_000  # 18 buckets before it
    seeded = (
        # this bucket: 3 delivered (10, 20, 30 ms), a 500 (40 ms) and a timeout (5000 ms)
        [(bucket + 1, 200, 10), (bucket + 2, 204, 20), (bucket + 3, 200, 30),
         (bucket + 4, 500, 40), (bucket + 5, None, 5000)]
        # three hours earlier: 100 delivered, 1 to 100 ms
        + [(earlier + i, 200, i + 1) for i in range(100)]
        # more than a day ago: not on the chart
        + [(bucket - 25 * 3600_000, 200, 1)]
    )
    await seed(service, cid, seeded[:50])
    await seed(service, cid, seeded[50:])  # a second batch adds to the first's counts
    other = await service.new_org("Globex")

    activity = await connector_activity(service.runtime, org.id, cid, until_ms=now)
    assert len(activity.buckets) == 144 and activity.bucket_ms == BUCKET_MS
    last, three_hours = activity.buckets[-1], activity.buckets[-19]
    assert last.start_ms == bucket and three_hours.start_ms == earlier
    assert last.counts == {"delivered": 3, "refused": 1, "no_answer": 1}
    assert (last.p50_ms, last.p99_ms) == (30, 5000)
    assert three_hours.counts == {"delivered": 100, "refused": 0, "no_answer": 0}
    assert (three_hours.p50_ms, three_hours.p99_ms) == (50, 99)
    assert activity.totals == {"delivered": 103, "refused": 1, "no_answer": 1}
    assert sum(b.total for b in activity.buckets) == 105
    assert [b for b in activity.buckets if b.total] == [three_hours, last]
    assert (activity.p50_ms, activity.p99_ms) == (49, 100)
    # Nothing of this connector for another organization.
    assert (await connector_activity(service.runtime, other.id, cid, until_ms=now)).totals == {
        "delivered": 0, "refused": 0, "no_answer": 0}

    page = await console.get(f"/console/connectors/{cid}")
    text = page.text
    assert "In all: 103 delivered, 1 refused (not 2xx), 1 no answer; p50 49 ms, p99 100 ms." \
        in text
    bars = re.findall(r'<g class="bar"><title>([^<]*)</title>(.*?)</g>', text)
    assert len(bars) == 2
    assert bars[1][0].endswith(": 3 delivered, 1 refused (not 2xx), 1 no answer")
    counts = [(c, int(n)) for c, n in re.findall(r'<rect class="o-(\w+)"[^>]*data-count="(\d+)"',
                                                  bars[1][1])]
    assert counts == [("delivered", 3), ("refused", 1), ("no_answer", 1)]
    # Bar heights are to scale: 100 attempts fill the plot (its top is 100), 5 a twentieth.
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" data-count', text)]
    assert heights[0] == pytest.approx(166, abs=0.01)  # the plot's height
    assert sum(heights[1:]) == pytest.approx(166 * 5 / 100, abs=0.05)
    points = [int(ms) for ms in re.findall(r'<circle class="l-p99"[^>]*data-ms="(\d+)"', text)]
    assert points == [99, 5000]
    desc = re.search(r'<desc id="chart-latency-desc">([^<]*)</desc>', text)
    assert desc and "p50 49 ms, p99 100 ms" in desc.group(1)
    table = re.search(r'<table id="activity-figures">.*?</table>', text, re.S)
    assert table
    cells = re.findall(r'<td class="num">([^<]*)</td>', table.group(0))
    assert cells == ["3", "1", "1", "30 ms", "5000 ms", "100", "0", "0", "50 ms", "99 ms"]


def test_percentiles_are_nearest_rank() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({7: 1}, 0.99) == 7
    assert percentile({1: 50, 2: 50}, 0.5) == 1
    assert percentile({1: 50, 2: 51}, 0.5) == 2
    assert percentile(dict.fromkeys(range(1, 101), 1), 0.99) == 99


async def test_a_failing_receiver_shows_on_the_chart(
    console: Console, org: Org
) -> None:
    def flaky(request: Received, n: int) -> web.Response:
        return web.Response(status=503 if n == 1 else 204)

    async with running_receiver(flaky) as rec:
        gateway = await org.gateway()
        connector = await org.connector(rec.url)
        await org.trigger(connector["id"], ["values"])
        await org.ingest(gateway["ingestToken"], "values", {
            "deviceId": "d", "property": "p", "timestamp": 1, "payload": 1})

        async def delivered() -> bool:
            return [d["status"] for d in await org.deliveries()] == ["delivered"]

        await eventually(delivered)
    page = await console.get(f"/console/connectors/{connector['id']}")
    assert "In all: 1 delivered, 1 refused (not 2xx), 0 no answer" in page.text
