"""The transform core (compile, apply: pure) and its sandbox (child processes that are killed
past the time limit), without a server."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from hookstream.errors import InvalidTransform, TransformFailed
from hookstream.pipeline.deliver import transform
from hookstream.pipeline.deliver.sandbox import TransformRunner

MESSAGE = orjson.dumps({
    "deviceId": "boiler-1", "property": "temperature", "timestamp": 1767225600000,
    "payload": 642, "scaledPayload": 64.2, "unit": "°C", "slug": "temperature",
    "tags": {"site": "north"},
})
RUNAWAY = "$count([1..9999999].([1..9999999]))"


def test_apply_reshapes_a_message_into_json_bytes() -> None:
    t = transform.compile('{"ts": timestamp, "values": {slug: scaledPayload}, "site": tags.site}')
    assert orjson.loads(t.apply(MESSAGE, 50)) == {
        "ts": 1767225600000, "values": {"temperature": 64.2}, "site": "north"}
    # Strings, numbers and arrays are bodies too; non-ASCII stays UTF-8.
    assert transform.compile("unit").apply(MESSAGE, 50) == '"°C"'.encode()
    assert transform.compile("$count($)").apply(b"[1,2,3]", 50) == b"3"
    assert transform.compile("$").apply(b"null", 50) == b"null"


@pytest.mark.parametrize(("expression", "words"), [
    ('{"a": ', ("does not parse", "S0203", "position")),
    ("", ("empty",)),
    ("   ", ("empty",)),
    ("x" * (transform.MAX_EXPRESSION_LENGTH + 1), ("longer than",)),
])
def test_compile_refuses_what_does_not_parse(expression: str, words: tuple[str, ...]) -> None:
    with pytest.raises(InvalidTransform) as caught:
        transform.compile(expression)
    assert caught.value.field == "expression"
    for word in words:
        assert word in caught.value.message


def test_compile_refuses_an_unknown_language() -> None:
    with pytest.raises(InvalidTransform) as caught:
        transform.compile("a", language="jq")
    assert caught.value.field == "language" and "'jsonata'" in caught.value.message


@pytest.mark.parametrize(("expression", "words"), [
    ("$number(unit)", ("Unable to cast value to a number", "D3030")),
    ("nothing.here", ("undefined",)),
    ('$error("stop")', ("stop",)),
    ("($f := function($n) { $f($n) }; $f(1))", ("ran past its time limit of 50 ms",)),
])
def test_apply_fails_with_a_readable_reason(expression: str, words: tuple[str, ...]) -> None:
    with pytest.raises(TransformFailed) as caught:
        transform.compile(expression).apply(MESSAGE, 50)
    for word in words:
        assert word in str(caught.value)


async def test_the_runner_applies_and_fails_like_the_core() -> None:
    runner = TransformRunner(50)
    try:
        assert await runner.apply("deviceId", MESSAGE) == b'"boiler-1"'
        with pytest.raises(TransformFailed, match="Unable to cast"):
            await runner.apply("$number(unit)", MESSAGE)
        # Many at once share the two processes; each gets its own answer.
        answers = await asyncio.gather(*(runner.apply("$ * 2", b"%d" % i) for i in range(50)))
        assert answers == [b"%d" % (i * 2) for i in range(50)]
    finally:
        await runner.close()


async def test_the_runner_kills_a_runaway_near_the_limit_and_goes_on() -> None:
    runner = TransformRunner(50)
    try:
        await runner.apply("1", b"{}")  # the processes' start is not what is timed here
        started = time.monotonic()
        with pytest.raises(TransformFailed, match="ran past its time limit of 50 ms"):
            await runner.apply(RUNAWAY, MESSAGE)
        # Alone it runs for about a minute: killed at the limit plus the grace period.
        assert time.monotonic() - started < 1.0
        # A new process takes the killed one's place.
        assert await runner.apply("slug", MESSAGE) == b'"temperature"'
        results = await asyncio.gather(runner.apply(RUNAWAY, MESSAGE),
                                       runner.apply("payload", MESSAGE), return_exceptions=True)
        assert isinstance(results[0], TransformFailed) and results[1] == b"642"
    finally:
        await runner.close()


async def test_a_cancelled_apply_does_not_leave_an_answer_for_the_next() -> None:
    runner = TransformRunner(2000, processes=1)
    try:
        await runner.apply("1", b"{}")
        task = asyncio.create_task(runner.apply(RUNAWAY, MESSAGE))
        await asyncio.sleep(0.05)  # deliberate: let it reach the child before cancelling
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await runner.apply("deviceId", MESSAGE) == b'"boiler-1"'
    finally:
        await runner.close()
