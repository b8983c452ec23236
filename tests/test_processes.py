"""Real processes: a worker killed with SIGKILL mid-run, and api/worker roles scaled out."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from hookstream.settings import Settings
from tests.support import (
    ADMIN_KEY,
    Received,
    eventually,
    free_port,
    hookstream_cmd,
    running_receiver,
    running_service,
    settings_env,
    spawn,
    wait_ready,
)


def value(i: int) -> dict[str, Any]:
    return {"deviceId": f"dev-{i % 7}", "property": "energy", "timestamp": 1_700_000_000_000 + i,
            "payload": i}


async def slow_ok(_: Received, __: int) -> web.Response:
    await asyncio.sleep(0.005)  # pacing: slow enough that a kill lands mid-run
    return web.Response(status=204)


async def wire(api: httpx.AsyncClient, name: str, receiver_url: str) -> dict[str, str]:
    """Through a running service's API: an organization, a gateway, a connector to the
    receiver with a trigger for values; the gateway's ingest headers."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    org = (await api.post("/api/v1/organizations", json={"name": name}, headers=admin)).json()
    auth = {"Authorization": f"Bearer {org['apiKey']}"}
    gw = (await api.post("/api/v1/gateways", json={"name": "g"}, headers=auth)).json()
    con = (await api.post("/api/v1/connectors", headers=auth, json={
        "name": "r", "baseUrl": receiver_url, "active": True,
        "routes": {"values": "/v", "events": "/e", "alarms": "/a"}})).json()
    await api.post(f"/api/v1/connectors/{con['id']}/triggers", headers=auth,
                   json={"kinds": ["values"], "allGateways": True})
    return {"Authorization": f"Bearer {gw['ingestToken']}"}


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


@pytest.mark.parametrize("settings_overrides", [{"lease_seconds": 2.0}])
async def test_sigkill_of_a_worker_mid_run_loses_no_accepted_message(
    settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(settings)
    log = tmp_path / "worker.log"
    async with running_service(settings, worker=False) as svc, running_receiver(slow_ok) as rec:
        org = await svc.new_org()
        gw = await org.gateway()
        con = await org.connector(rec.url)
        await org.trigger(con["id"], ["values"], [gw["id"]])
        ids: list[str] = []
        for start in (0, 1000):
            resp = await org.ingest(gw["ingestToken"], "values",
                                    [value(i) for i in range(start, start + 1000)])
            assert resp.status_code == 202, resp.text
            ids += resp.json()["ids"]

        first = spawn(hookstream_cmd("worker"), env, log)
        try:
            await rec.wait_for(1000, timeout=60)
        finally:
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        before_restart = len(set(rec.ids()))
        assert before_restart < len(ids), "the kill must land before the run finished"

        second = spawn(hookstream_cmd("worker"), env, log)
        try:
            async def all_arrived() -> bool:
                return set(rec.ids()) >= set(ids)

            await eventually(all_arrived, timeout=90)

            async def all_delivered() -> bool:
                dels = await org.deliveries()
                return len(dels) == len(ids) and {d["status"] for d in dels} == {"delivered"}

            await eventually(all_delivered, timeout=30)
        finally:
            code = stop(second)
            await org.api.aclose()
        assert code == 0, log.read_text()[-3000:]
        duplicates = len(rec.received) - len(set(rec.ids()))
        print(f"\n{len(ids)} messages; {before_restart} arrived before SIGKILL; "
              f"{duplicates} duplicates after restart (leased, unrecorded attempts)")
        assert set(rec.ids()) == set(ids)
        # Duplicates are bounded by what one worker can have in flight when killed.
        assert duplicates <= settings.worker_concurrency + settings.claim_batch


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_api_and_two_worker_processes_deliver_each_message_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    async with running_receiver() as rec:
        try:
            for port in ports:
                env = settings_env(settings, HOOKSTREAM_LISTEN=f"127.0.0.1:{port}")
                procs.append(spawn(hookstream_cmd("api"), env, tmp_path / f"api-{port}.log"))
            for n in range(2):
                procs.append(spawn(hookstream_cmd("worker"), settings_env(settings),
                                   tmp_path / f"worker-{n}.log"))
            apis = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=30)
                    for p in ports]
            for port, proc in zip(ports, procs, strict=False):
                await wait_ready(proc, tmp_path / f"api-{port}.log",
                                 url=f"http://127.0.0.1:{port}/readyz", what="hookstream api")
            for n, proc in enumerate(procs[2:]):
                await wait_ready(proc, tmp_path / f"worker-{n}.log", what="hookstream worker")
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            org = (await apis[0].post("/api/v1/organizations", json={"name": "Scale"},
                                      headers=admin)).json()
            auth = {"Authorization": f"Bearer {org['apiKey']}"}
            gw = (await apis[1].post("/api/v1/gateways", json={"name": "gw"},
                                     headers=auth)).json()
            con = (await apis[0].post("/api/v1/connectors", headers=auth, json={
                "name": "r", "baseUrl": rec.url, "active": True,
                "routes": {"values": "/v", "events": "/e", "alarms": "/a"}})).json()
            resp = await apis[1].post(f"/api/v1/connectors/{con['id']}/triggers", headers=auth,
                                      json={"kinds": ["values"], "allGateways": True})
            assert resp.status_code == 201

            token = {"Authorization": f"Bearer {gw['ingestToken']}"}

            async def send(n: int) -> list[str]:
                r = await apis[n % 2].post("/ingest/v1/values", headers=token,
                                           json=[value(n * 100 + i) for i in range(100)])
                assert r.status_code == 202, r.text
                return list(r.json()["ids"])

            batches = await asyncio.gather(*(send(n) for n in range(20)))
            ids = [i for batch in batches for i in batch]
            await rec.wait_for(len(ids), timeout=120)

            async def settled() -> bool:  # every outcome recorded: nothing more is sent
                r = await apis[0].get("/api/v1/deliveries", headers=auth,
                                      params={"status": "pending", "limit": 1})
                return r.status_code == 200 and r.json()["items"] == []

            await eventually(settled, timeout=60, what="no delivery left pending")
            assert len(rec.received) == len(ids) == 2000
            assert set(rec.ids()) == set(ids)
            for c in apis:
                await c.aclose()
        finally:
            codes = [stop(p) for p in procs]
    assert codes == [0, 0, 0, 0], [
        (tmp_path / f).read_text()[-2000:] for f in os.listdir(tmp_path) if f.endswith(".log")
    ]


@pytest.mark.parametrize("settings_overrides", [{"lease_seconds": 2.0}])
async def test_sigkill_of_serve_right_after_202_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(settings, HOOKSTREAM_LISTEN=f"127.0.0.1:{port}")
    log = tmp_path / "serve.log"
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)

    async with running_receiver(slow_ok) as rec:
        serve = spawn(hookstream_cmd("serve"), env, log)
        try:
            await wait_ready(serve, log, url=f"http://127.0.0.1:{port}/readyz",
                             what="hookstream serve")
            token = await wire(api, "K", rec.url)
            ids: list[str] = []
            for n in range(5):
                r = await api.post("/ingest/v1/values", headers=token,
                                   json=[value(n * 200 + i) for i in range(200)])
                assert r.status_code == 202
                ids += r.json()["ids"]
        finally:
            serve.send_signal(signal.SIGKILL)
            serve.wait(10)
        assert len(set(rec.ids())) < len(ids), "the kill must land before everything arrived"

        again = spawn(hookstream_cmd("serve"), env, log)
        try:
            async def all_arrived() -> bool:
                return set(rec.ids()) >= set(ids)

            await eventually(all_arrived, timeout=90)
        finally:
            code = stop(again)
            await api.aclose()
        assert code == 0, log.read_text()[-3000:]
        assert set(rec.ids()) == set(ids)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_serve_delivers_from_a_worker_process_and_takes_it_down_with_it(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(settings, HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", HOOKSTREAM_WORKERS="1")
    log = tmp_path / "serve.log"
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    async with running_receiver() as rec:
        serve = spawn(hookstream_cmd("serve"), env, log)
        try:
            await wait_ready(serve, log, url=f"http://127.0.0.1:{port}/readyz",
                             what="hookstream serve")
            workers = children_of(serve.pid)
            assert len(workers) == 1, (workers, log.read_text()[-2000:])
            assert "1 delivery worker process" in log.read_text()
            token = await wire(api, "P", rec.url)
            resp = await api.post("/ingest/v1/values", headers=token,
                                  json=[value(i) for i in range(50)])
            assert resp.status_code == 202
            ids = set(resp.json()["ids"])

            async def all_arrived() -> bool:
                return set(rec.ids()) >= ids

            # Woken through its pipe: well before the poll interval would have found them.
            await eventually(all_arrived, timeout=60)

            async def counted() -> bool:
                text = (await api.get("/metrics")).text
                line = next((x for x in text.splitlines() if x.startswith(
                    'hookstream_delivery_attempts_total{outcome="delivered"}')), "")
                return line != "" and float(line.split()[-1]) >= 50

            # The worker process counts the attempts; the API's /metrics shows them.
            await eventually(counted, timeout=30, what="the worker's attempts in /metrics")
        finally:
            serve.send_signal(signal.SIGKILL)
            serve.wait(10)
            await api.aclose()

        async def workers_gone() -> bool:
            return not any(alive(pid) for pid in workers)

        # Killed with SIGKILL, the parent cannot stop them: its end of their pipe closing does.
        await eventually(workers_gone, timeout=60, what="the worker process to stop")


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def test_serve_with_api_processes_shares_its_port_and_wakes_its_workers(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    # Polling every 10 minutes: what arrives in time was woken through the pipes.
    env = settings_env(settings, HOOKSTREAM_LISTEN=f"127.0.0.1:{port}", HOOKSTREAM_WORKERS="1",
                       HOOKSTREAM_API_PROCESSES="3", HOOKSTREAM_POLL_INTERVAL="600")
    log = tmp_path / "serve.log"
    async with running_receiver() as rec:
        serve = spawn(hookstream_cmd("serve"), env, log)
        try:
            await wait_ready(serve, log, url=f"http://127.0.0.1:{port}/readyz",
                             what="hookstream serve")
            assert "api (3 processes) + 1 delivery worker process" in log.read_text()
            children = children_of(serve.pid)
            apis = [p for p in children if command_line(p).endswith(" api ")]
            assert len(children) == 3 and len(apis) == 2, [command_line(p) for p in children]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
                token = await wire(api, "A", rec.url)

            async def send(n: int) -> list[str]:
                # A connection each: the kernel hands each to one of the API processes.
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                             timeout=30) as one:
                    r = await one.post("/ingest/v1/values", headers=token,
                                       json=[value(n * 10 + i) for i in range(10)])
                assert r.status_code == 202, r.text
                return list(r.json()["ids"])

            ids = {i for batch in await asyncio.gather(*(send(n) for n in range(30)))
                   for i in batch}

            async def all_arrived() -> bool:
                return set(rec.ids()) >= ids

            await eventually(all_arrived, timeout=120, what="300 values at the receiver")

            # An API process killed is started again; meanwhile the others answer.
            os.kill(apis[0], signal.SIGKILL)

            async def replaced() -> bool:
                now = [p for p in children_of(serve.pid) if command_line(p).endswith(" api ")]
                return len(now) == 2 and apis[0] not in now

            await eventually(replaced, timeout=60, what="the killed API process replaced")
            more = set(await send(100))

            async def more_arrived() -> bool:
                return set(rec.ids()) >= more

            await eventually(more_arrived, timeout=120)
            every = children_of(serve.pid)
        finally:
            code = stop(serve, timeout=60)
        assert code == 0, log.read_text()[-3000:]
        assert not any(alive(pid) for pid in every)
        assert "Traceback" not in log.read_text()
