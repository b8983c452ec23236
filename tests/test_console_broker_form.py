"""The console's connector form: a type select with each type's fields (server-rendered)."""

from __future__ import annotations

from tests.broker_support import NATS_URL
from tests.support import Org
from tests.test_console_pages import Console, console, field_error, secret_shown

__all__ = ["console"]  # the fixture, used by name


async def test_the_form_offers_each_type_with_its_fields(console: Console) -> None:
    page = await console.get("/console/connectors/new")
    assert page.status_code == 200
    for value in ("http", "mqtt", "amqp", "nats"):
        assert f'<option value="{value}"' in page.text
    for name in ("mqtt.url", "mqtt.topic", "mqtt.qos", "mqtt.retain", "amqp.exchange",
                 "amqp.routingKey", "nats.subject", "nats.jetstream", "baseUrl"):
        assert f'name="{name}"' in page.text, name


async def test_a_nats_connector_added_through_the_form(console: Console, org: Org) -> None:
    page = await console.post("/console/connectors/new", {
        "name": "Stream", "type": "nats", "nats.url": NATS_URL,
        "nats.subject": "iot.{kind}.{deviceId}", "nats.jetstream": "on",
        # The HTTP section is on the page too (without JavaScript): it is not read.
        "baseUrl": "", "authentication.type": "none",
    })
    assert page.status_code == 200, page.text
    assert secret_shown(page.text).startswith("whsec_")
    [con] = (await org.api.get("/api/v1/connectors")).json()["items"]
    assert con["type"] == "nats" and con["target"]["subject"] == "iot.{kind}.{deviceId}"
    assert con["target"]["jetstream"] is True


async def test_a_bad_topic_is_shown_under_its_field_and_the_password_not_echoed(
    console: Console,
) -> None:
    page = await console.post("/console/connectors/new", {
        "name": "Broker", "type": "mqtt", "mqtt.url": "mqtt://broker.example:1883",
        "mqtt.username": "u", "mqtt.password": "s3cret-pass", "mqtt.topic": "a/{nope}",
        "mqtt.qos": "1",
    })
    assert page.status_code == 422
    assert "Unknown placeholder" in field_error(page.text, "mqtt.topic")
    assert "s3cret-pass" not in page.text
    assert 'value="mqtt" selected' in page.text


async def test_a_broker_connector_page_and_its_edit_keep_the_password(
    console: Console, org: Org,
) -> None:
    resp = await org.api.post("/api/v1/connectors", json={
        "name": "Broker", "type": "mqtt", "target": {
            "url": "mqtt://broker.example:1883", "username": "u", "password": "kept-pass",
            "topic": "a/{kind}"}})
    assert resp.status_code == 201, resp.text
    cid = resp.json()["id"]
    page = await console.get(f"/console/connectors/{cid}")
    assert page.status_code == 200 and "a/{kind}" in page.text and "kept-pass" not in page.text
    edit = await console.get(f"/console/connectors/{cid}/edit")
    assert edit.status_code == 200 and 'name="mqtt.topic"' in edit.text
    assert "kept-pass" not in edit.text
    saved = await console.post(f"/console/connectors/{cid}/edit", {
        "name": "Broker", "mqtt.url": "mqtt://broker.example:1883", "mqtt.username": "u",
        "mqtt.password": "", "mqtt.topic": "b/{kind}/{deviceId}", "mqtt.qos": "0",
        "ordering": "none"})
    assert saved.status_code == 303, saved.text
    con = (await org.api.get(f"/api/v1/connectors/{cid}")).json()
    assert con["target"]["topic"] == "b/{kind}/{deviceId}" and con["target"]["qos"] == 0
    assert con["target"]["credentials"] is True  # the password left empty was kept
    bad = await console.post(f"/console/connectors/{cid}/edit", {
        "name": "Broker", "mqtt.url": "http://nope", "mqtt.topic": "b", "mqtt.qos": "1",
        "ordering": "none"})
    assert bad.status_code == 422
    assert "mqtt://" in field_error(bad.text, "mqtt.url")
