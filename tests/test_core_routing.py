"""Routing: which connectors a message from a gateway goes to, through their triggers."""

from __future__ import annotations

from hookstream.pipeline.route.routing import Trigger, connectors_for


def trig(
    connector: str,
    kinds: set[str],
    gateways: set[str] | None = None,
    *,
    all_gateways: bool = False,
) -> Trigger:
    return Trigger(
        connector_id=connector,
        kinds=frozenset(kinds),
        all_gateways=all_gateways,
        gateway_ids=frozenset(gateways or set()),
    )


def test_no_triggers_no_connectors() -> None:
    assert connectors_for("values", "gw_1", []) == []


def test_kind_filter() -> None:
    triggers = [trig("c_values", {"values"}, {"gw_1"}), trig("c_alarms", {"alarms"}, {"gw_1"})]
    assert connectors_for("values", "gw_1", triggers) == ["c_values"]
    assert connectors_for("alarms", "gw_1", triggers) == ["c_alarms"]
    assert connectors_for("events", "gw_1", triggers) == []


def test_several_kinds_in_one_trigger() -> None:
    triggers = [trig("c", {"values", "events"}, {"gw_1"})]
    assert connectors_for("values", "gw_1", triggers) == ["c"]
    assert connectors_for("events", "gw_1", triggers) == ["c"]
    assert connectors_for("alarms", "gw_1", triggers) == []


def test_gateway_scope() -> None:
    triggers = [trig("c", {"values"}, {"gw_1", "gw_2"})]
    assert connectors_for("values", "gw_1", triggers) == ["c"]
    assert connectors_for("values", "gw_2", triggers) == ["c"]
    assert connectors_for("values", "gw_3", triggers) == []


def test_all_gateways_matches_any_gateway_even_unknown_ones() -> None:
    triggers = [trig("c", {"events"}, all_gateways=True)]
    assert connectors_for("events", "gw_1", triggers) == ["c"]
    assert connectors_for("events", "gw_created_later", triggers) == ["c"]
    # The kind filter still applies.
    assert connectors_for("values", "gw_1", triggers) == []


def test_empty_gateway_scope_without_all_gateways_matches_nothing() -> None:
    assert connectors_for("values", "gw_1", [trig("c", {"values"}, set())]) == []


def test_empty_kinds_match_nothing() -> None:
    assert connectors_for("values", "gw_1", [trig("c", set(), all_gateways=True)]) == []


def test_each_connector_once_even_with_two_matching_triggers() -> None:
    triggers = [
        trig("c", {"values"}, {"gw_1"}),
        trig("c", {"values", "alarms"}, all_gateways=True),
    ]
    assert connectors_for("values", "gw_1", triggers) == ["c"]


def test_order_follows_the_triggers_and_is_stable() -> None:
    triggers = [
        trig("c_3", {"values"}, {"gw_1"}),
        trig("c_1", {"values"}, all_gateways=True),
        trig("c_2", {"alarms"}, {"gw_1"}),
        trig("c_3", {"values"}, all_gateways=True),
        trig("c_2", {"values"}, {"gw_1"}),
        trig("c_4", {"values"}, {"gw_9"}),
    ]
    expected = ["c_3", "c_1", "c_2"]
    for _ in range(3):
        assert connectors_for("values", "gw_1", triggers) == expected


def test_a_non_matching_trigger_does_not_hide_a_later_matching_one() -> None:
    triggers = [trig("c", {"alarms"}, {"gw_1"}), trig("c", {"values"}, {"gw_1"})]
    assert connectors_for("values", "gw_1", triggers) == ["c"]


def test_accepts_any_iterable_once() -> None:
    triggers = (t for t in [trig("a", {"values"}, {"gw"}), trig("b", {"values"}, {"gw"})])
    assert connectors_for("values", "gw", triggers) == ["a", "b"]


def test_trigger_matches() -> None:
    t = trig("c", {"values"}, {"gw_1"})
    assert t.matches("values", "gw_1")
    assert not t.matches("values", "gw_2")
    assert not t.matches("events", "gw_1")
