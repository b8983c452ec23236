"""``hookstream receive --store``: webhooks kept in a SQLite file, repeats recognised, tallied."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from hookstream.pipeline.deliver.signing import new_secret, secret_key, sign
from hookstream.tools.receiver import Tally, serve
from tests.support import free_port, free_socket, hookstream_cmd, spawn, wait_ready

SECRET = new_secret()


def signed(webhook_id: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed now, as hookstream sends them."""
    stamp = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign([secret_key(secret)], webhook_id, stamp, body),
    }


def rows(path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM webhooks ORDER BY received_at")]


@dataclass
class Running:
    url: str
    task: asyncio.Task[Tally]
    lines: list[str] = field(default_factory=list)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as http, \
                http.post(self.url + path, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def finished(self) -> Tally:
        try:
            return await asyncio.wait_for(self.task, 30)
        except TimeoutError:
            raise AssertionError(f"the receiver did not stop after 30 s: {self.lines}") from None


@contextlib.asynccontextmanager
async def receiving(**options: Any) -> AsyncIterator[Running]:
    """``serve`` in this event loop on a free port; stopped on the way out if still running."""
    sock = free_socket()
    lines: list[str] = []
    listening = asyncio.Event()

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("listening on"):
            listening.set()

    task = asyncio.create_task(serve("127.0.0.1", 0, options.pop("secret", SECRET),
                                     options.pop("count", None), say, sock=sock, **options))
    running = Running(f"http://127.0.0.1:{sock.getsockname()[1]}", task, lines)
    try:
        ready = asyncio.create_task(listening.wait())
        done, _ = await asyncio.wait({ready, task}, timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task in done:
            task.result()  # raises what stopped it
            raise AssertionError(f"the receiver stopped before listening: {lines}")
        if ready not in done:
            raise AssertionError(f"the receiver was not listening after 30 s: {lines}")
        yield running
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()


# --- in this process ----------------------------------------------------------------------

async def test_a_signed_webhook_is_stored_before_it_is_answered(tmp_path: Path) -> None:
    store = tmp_path / "new" / "folder" / "hooks.db"
    body = orjson.dumps({"deviceId": "boiler-1", "property": "temperature", "payload": 64.2})
    before = int(time.time() * 1000)
    async with receiving(store=store) as rec:
        assert await rec.post("/hooks/values?site=7", body, signed("msg_01", body)) == 204
        # Read while the receiver still runs: the row was committed before the 204 left.
        [row] = rows(store)
    assert row["webhook_id"] == "msg_01" and row["body"] == body
    assert row["method"] == "POST" and row["path"] == "/hooks/values?site=7"
    assert row["signature"] == "verified"
    assert before <= row["received_at"] <= int(time.time() * 1000)
    headers = json.loads(row["headers"])
    assert headers["webhook-id"] == "msg_01" and headers["webhook-signature"].startswith("v1,")
    with contextlib.closing(sqlite3.connect(store)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert any(li.startswith("POST /hooks/values webhook-id=msg_01 (signature verified) {")
               for li in rec.lines), rec.lines


async def test_a_repeated_webhook_id_is_answered_and_stored_once(tmp_path: Path) -> None:
    store = tmp_path / "hooks.db"
    first, retry = b'{"n":1}', b'{"n":1,"again":true}'
    async with receiving(store=store, count=3) as rec:
        assert await rec.post("/v", first, signed("msg_a", first)) == 204
        assert await rec.post("/v", retry, signed("msg_a", retry)) == 204
        assert await rec.post("/v", first, signed("msg_b", first)) == 204
        tally = await rec.finished()
    assert [(r["webhook_id"], r["body"]) for r in rows(store)] == [
        ("msg_a", first), ("msg_b", first)], "the first copy is kept"
    posted = [li for li in rec.lines if li.startswith("POST")]
    assert ["(duplicate)" in li for li in posted] == [False, True, False], posted
    assert (tally.accepted, tally.duplicates) == (3, 1)
    assert rec.lines[-1] == "received 3 webhooks (1 duplicates)"


async def test_bad_signatures_and_missing_ids_are_refused_and_not_stored(tmp_path: Path) -> None:
    store = tmp_path / "hooks.db"
    body = b'{"n":1}'
    no_id = {k: v for k, v in signed("msg_x", body).items() if k != "webhook-id"}
    async with receiving(store=store) as rec:
        assert await rec.post("/v", body, signed("msg_x", body, new_secret())) == 401
        assert await rec.post("/v", b'{"n":2}', signed("msg_x", body)) == 401
        assert await rec.post("/v", body, no_id) == 400
    assert rows(store) == []
    assert len([li for li in rec.lines if li.startswith("REJECTED POST /v")]) == 3


async def test_unsigned_webhooks_without_an_id_get_a_generated_key(tmp_path: Path) -> None:
    store = tmp_path / "hooks.db"
    async with receiving(secret=None, store=store, count=2) as rec:
        assert await rec.post("/v", b"one", {}) == 204
        assert await rec.post("/v", b"one", {}) == 204
        tally = await rec.finished()
    stored = rows(store)
    assert [r["body"] for r in stored] == [b"one", b"one"] and tally.duplicates == 0
    assert all(r["webhook_id"].startswith("none-") and r["signature"] == "unsigned"
               for r in stored)


async def test_a_batch_is_one_row_its_messages_readable_with_json_each(tmp_path: Path) -> None:
    store = tmp_path / "hooks.db"
    batch = orjson.dumps([{"deviceId": f"d{i}", "payload": i} for i in range(3)])
    async with receiving(store=store, count=1) as rec:
        assert await rec.post("/values", batch, signed("bat_1", batch)) == 204
        await rec.finished()
    with contextlib.closing(sqlite3.connect(store)) as conn:
        assert conn.execute("SELECT count(*) FROM webhooks").fetchone()[0] == 1
        items = conn.execute("SELECT json_extract(value, '$.deviceId') FROM webhooks, "
                             "json_each(CAST(body AS TEXT))").fetchall()
    assert [i[0] for i in items] == ["d0", "d1", "d2"]


async def test_the_file_outlives_the_receiver_and_knows_ids_from_earlier_runs(
        tmp_path: Path) -> None:
    store = tmp_path / "hooks.db"
    body = b'{"n":1}'
    async with receiving(store=store, count=1) as rec:
        assert await rec.post("/v", body, signed("msg_1", body)) == 204
        await rec.finished()
    assert [r["webhook_id"] for r in rows(store)] == ["msg_1"]
    async with receiving(store=store, count=2) as again:
        assert await again.post("/v", body, signed("msg_1", body)) == 204
        assert await again.post("/v", body, signed("msg_2", body)) == 204
        tally = await again.finished()
    assert tally.duplicates == 1
    assert [r["webhook_id"] for r in rows(store)] == ["msg_1", "msg_2"]


async def test_status_500_is_answered_and_nothing_is_stored(tmp_path: Path) -> None:
    store = tmp_path / "hooks.db"
    body = b'{"n":1}'
    async with receiving(store=store, status=500, count=2) as rec:
        assert await rec.post("/v", body, signed("msg_r", body)) == 500
        assert await rec.post("/v", body, signed("msg_r", body)) == 500
        tally = await rec.finished()
    # The sender retries a 500, so keeping it would make the retry look like a duplicate.
    assert rows(store) == []
    assert (tally.accepted, tally.duplicates) == (2, 0)
    async with receiving(store=store, status=202, count=1) as ok:
        assert await ok.post("/v", body, signed("msg_r", body)) == 202
        await ok.finished()
    assert [r["webhook_id"] for r in rows(store)] == ["msg_r"]


async def test_without_a_file_repeats_are_still_recognised_and_quiet_prints_the_count() -> None:
    async with receiving(quiet=True, count=3) as rec:
        for webhook_id in ("msg_1", "msg_1", "msg_2"):
            assert await rec.post("/v", b"{}", signed(webhook_id, b"{}")) == 204
        await rec.finished()
    assert len(rec.lines) == 2, rec.lines
    assert rec.lines[0].startswith("listening on")
    assert rec.lines[1] == "received 3 webhooks (1 duplicates)"


async def test_serve_refuses_a_status_out_of_range() -> None:
    with pytest.raises(ValueError, match="200 to 599"):
        await serve("127.0.0.1", 0, None, None, print, status=199)


# --- the command, as a user runs it -------------------------------------------------------

def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}


async def started(proc: subprocess.Popen[bytes], log: Path, port: int) -> str:
    """The receiver's URL once its log says it listens."""
    await wait_ready(proc, log, line="listening on", what="hookstream receive")
    return f"http://127.0.0.1:{port}"


async def exit_code(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    try:
        return await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the receiver did not exit within {timeout} s") from None


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        await r.read()
        return r.status


@pytest.mark.slow
async def test_cli_stores_then_exits_after_count_with_the_final_line(tmp_path: Path) -> None:
    port, log, store = free_port(), tmp_path / "receive.log", tmp_path / "data" / "hooks.db"
    proc = spawn(hookstream_cmd("receive", "--port", str(port), "--secret", SECRET,
                                "--store", str(store), "--count", "2"), child_env(), log)
    try:
        url = await started(proc, log, port) + "/hooks/values"
        body = b'{"deviceId":"boiler-1"}'
        assert await post(url, body, signed("msg_c", body)) == 204
        assert await post(url, body, signed("msg_c", body)) == 204
        assert await exit_code(proc) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert "storing in" in out and "(duplicate)" in out and "Traceback" not in out
    assert out.splitlines()[-1] == "received 2 webhooks (1 duplicates)"
    assert [(r["webhook_id"], r["body"]) for r in rows(store)] == [("msg_c", body)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_cli_exits_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    port, log, store = free_port(), tmp_path / "receive.log", tmp_path / "hooks.db"
    proc = spawn(hookstream_cmd("receive", "--port", str(port), "--store", str(store),
                                "--quiet"), child_env(), log)
    try:
        url = await started(proc, log, port)
        assert await post(url + "/v", b'{"n":1}', {"webhook-id": "msg_s"}) == 204
        proc.send_signal(sig)
        assert await exit_code(proc) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert "Traceback" not in out and "POST" not in out, out
    assert out.splitlines()[-1] == "received 1 webhooks (0 duplicates)"
    assert [r["webhook_id"] for r in rows(store)] == ["msg_s"]


@pytest.mark.slow
@pytest.mark.parametrize("value", ["199", "600", "soon"])
def test_cli_refuses_an_invalid_status(tmp_path: Path, value: str) -> None:
    done = subprocess.run(hookstream_cmd("receive", "--status", value), cwd=tmp_path,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--status" in done.stderr and "Traceback" not in done.stderr, done.stderr
    if value != "soon":  # the message names the bound that was crossed
        assert ("200" if value == "199" else "599") in done.stderr, done.stderr


@pytest.mark.slow
def test_cli_refuses_a_store_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    done = subprocess.run(hookstream_cmd("receive", "--port", str(free_port()), "--store",
                                         str(tmp_path / "a-file" / "hooks.db")),
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot use --store" in done.stderr and "Traceback" not in done.stderr
