"""Readiness of a process's roles (pure): what /readyz reports and when the line is logged."""

from __future__ import annotations

import pytest

from hookstream.readiness import Readiness


def test_the_readiness_line_comes_once_every_expected_role_is_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    readiness = Readiness()
    for role in ("api", "worker", "mqtt"):
        readiness.expect(role)
    with caplog.at_level("INFO", logger="hookstream.ready"):
        readiness.ready("api")
        readiness.ready("worker")
        assert readiness.roles == {"api": "ready", "worker": "ready", "mqtt": "starting"}
        assert readiness.waiting == {
            "mqtt": "the broker to acknowledge the bridge's subscriptions"}
        assert not caplog.records
        readiness.ready("mqtt")
        readiness.ready("mqtt")  # again, e.g. after a reconnect: nothing more
        readiness.expect("mqtt")  # a role ready once stays ready
    assert readiness.waiting == {}
    assert [r.getMessage() for r in caplog.records] == [
        "hookstream ready: api, delivery worker, MQTT bridge"]
