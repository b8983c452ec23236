"""Broker topics from templates, and broker targets as the API takes them (pure)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookstream.errors import ValidationFailed
from hookstream.pipeline.deliver.broker_target import build, parse
from hookstream.pipeline.deliver.topics import (
    ABSENT,
    MIXED,
    Source,
    escape,
    merge,
    render,
    template_problem,
)

WILDCARDS = {"mqtt": "/+#", "amqp": ".*#", "nats": ".*> \t"}


@pytest.mark.parametrize("protocol", ["mqtt", "amqp", "nats"])
@given(value=st.text(min_size=1, max_size=40))
def test_an_escaped_value_is_one_level_without_wildcards_and_decodes_back(
    protocol: str, value: str
) -> None:
    escaped = escape(value, protocol)
    assert not any(c in escaped for c in WILDCARDS[protocol])
    assert "\x00" not in escaped
    if protocol == "nats":
        assert not any(c.isspace() for c in escaped)
    assert unquote(escaped) == value


def test_render_fills_each_placeholder_escaped_for_the_protocol() -> None:
    source = Source("values", gateway_id="gw_1", gateway_external_id="site/7",
                    device_id="a.b/c", property="temp #1")
    template_mqtt = "sites/{gatewayExternalId}/{gatewayId}/{kind}/{deviceId}/{property}"
    assert render(template_mqtt, source, "mqtt") == "sites/site%2F7/gw_1/values/a.b%2Fc/temp %231"
    assert render("{kind}.{deviceId}.{property}", source, "amqp") == \
        "values.a%2Eb/c.temp %231"
    assert render("iot.{deviceId}.{property}", source, "nats") == "iot.a%2Eb/c.temp%20#1"


def test_a_missing_value_is_an_underscore_and_a_batch_of_devices_is_mixed() -> None:
    alarm = Source("alarms", gateway_id="gw_1", device_id="d1")
    assert render("a/{gatewayExternalId}/{property}", alarm, "mqtt") == f"a/{ABSENT}/{ABSENT}"
    batch = merge([Source("values", "gw", None, "d1", "t"), Source("values", "gw", None, "d2",
                                                                  "t")])
    assert render("{gatewayId}/{deviceId}/{property}", batch, "mqtt") == f"gw/{MIXED}/t"


@pytest.mark.parametrize(("protocol", "template", "problem"), [
    ("mqtt", "a/{device}", "unknown placeholder '{device}'"),
    ("mqtt", "a/+/{kind}", "wildcards"),
    ("mqtt", "a/#", "wildcards"),
    ("mqtt", "", "cannot be empty"),
    ("mqtt", "a/{kind", "outside a placeholder"),
    ("nats", "a..{kind}", "empty token"),
    ("nats", "a.>", "wildcards"),
    ("nats", "a b.{kind}", "whitespace"),
    ("amqp", "x" * 256, "longer than 255"),
])
def test_bad_templates_are_refused_saying_why(protocol: str, template: str, problem: str
                                              ) -> None:
    why = template_problem(template, protocol)
    assert why is not None and problem in why


@pytest.mark.parametrize(("kind", "target", "field", "problem"), [
    ("mqtt", {"url": "http://h", "topic": "t"}, "target.url", "mqtt:// or mqtts://"),
    ("mqtt", {"url": "mqtt://h", "topic": "t", "qos": 2}, "target.qos", "0 (at most once)"),
    ("mqtt", {"url": "mqtt://h", "topic": "t/{gateway}"}, "target.topic", "unknown placeholder"),
    ("mqtt", {"url": "mqtt://h"}, "target.topic", "required"),
    ("mqtt", {"url": "mqtt://h", "topic": "t", "extra": 1}, "target.extra", "not a field"),
    ("amqp", {"url": "nats://h", "routingKey": "k"}, "target.url", "amqp://"),
    ("amqp", {"url": "amqp://h", "exchange": "a b", "routingKey": "k"}, "target.exchange",
     "exchange name"),
    ("nats", {"url": "nats://h", "subject": "a.*"}, "target.subject", "wildcards"),
    ("nats", {"url": "nats://h", "subject": "a", "jetstream": "yes"}, "target.jetstream",
     "true or false"),
    ("nats", "nats://h", "target", "'target' object"),
])
def test_bad_targets_are_refused_naming_the_field(kind: str, target: object, field: str,
                                                  problem: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse(kind, target)
    assert caught.value.details[0]["field"] == field
    assert problem in caught.value.message


def test_credentials_leave_the_shown_part_and_are_kept_when_not_resent() -> None:
    public, secret = parse("amqp", {"url": "amqp://u%40x:p%3Aw@rabbit:5672/prod",
                                    "exchange": "iot", "routingKey": "{kind}"})
    assert public["url"] == "amqp://rabbit:5672/prod" and public["credentials"] is True
    assert secret == {"username": "u@x", "password": "p:w"}
    target = build("amqp", public, secret)
    assert (target.host, target.port, target.vhost, target.username) == \
        ("rabbit", 5672, "prod", "u@x")
    # A PATCH without credentials keeps them; null removes them.
    again, kept = parse("amqp", {"url": "amqp://rabbit/prod", "exchange": "iot",
                                 "routingKey": "{kind}.{deviceId}"}, secret)
    assert kept == secret and again["routingKey"] == "{kind}.{deviceId}"
    _, removed = parse("amqp", {"url": "amqp://rabbit/prod", "routingKey": "k",
                                "username": None, "password": None}, secret)
    assert removed == {}
    mqtt_public, mqtt_secret = parse("mqtt", {"url": "mqtts://b", "username": "u",
                                              "password": "p", "topic": "t"})
    assert "password" not in mqtt_public and "username" not in mqtt_public
    assert build("mqtt", mqtt_public, mqtt_secret).port == 8883
