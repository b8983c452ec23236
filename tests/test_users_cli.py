"""`hookstream user create`: the real command line, against both databases."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from hookstream.security.passwords import verify_password
from hookstream.storage.repository import Repository
from tests.console_support import browser, sign_in
from tests.support import Org, Service, hookstream_cmd, settings_env


async def user_create(service: Service, cwd: Path, *args: str,
                      stdin: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the service answers from this test's event loop meanwhile.
    return await asyncio.to_thread(
        subprocess.run, hookstream_cmd("user", "create", *args), input=stdin, cwd=cwd,
        env=settings_env(service.settings), capture_output=True, text=True, timeout=60,
    )


def assert_refused(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_create_a_user_then_sign_in(service: Service, org: Org, tmp_path: Path) -> None:
    done = await user_create(service, tmp_path, "--org", org.id, "--email",
                             " Ana@Acme.Example ", stdin="long enough secret\nignored\n")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"id", "orgId", "email"}
    assert body["orgId"] == org.id and body["email"] == "ana@acme.example"
    assert body["id"].startswith("usr_")

    async with service.runtime.db.read() as conn:
        row = await Repository(conn).user_by_email("ana@acme.example")
    assert row is not None and row.id == body["id"]
    assert row.password_hash.startswith("$argon2id$")
    assert verify_password(row.password_hash, "long enough secret")

    async with browser(service) as web:
        signed = await sign_in(web, "ana@acme.example", "long enough secret")
        assert signed.status_code == 303


async def test_refusals_are_one_line_and_exit_1(
    service: Service, org: Org, tmp_path: Path
) -> None:
    ok = await user_create(service, tmp_path, "--org", org.id, "--email", "bo@acme.example",
                           stdin="long enough secret\n")
    assert ok.returncode == 0, ok.stderr

    taken = await user_create(service, tmp_path, "--org", org.id, "--email",
                              "BO@acme.example", stdin="another secret\n")
    assert_refused(taken, "already exists")
    unknown_org = await user_create(service, tmp_path, "--org", "org_nosuch", "--email",
                                    "cy@acme.example", stdin="long enough secret\n")
    assert_refused(unknown_org, "no organization 'org_nosuch'")
    short = await user_create(service, tmp_path, "--org", org.id, "--email",
                              "di@acme.example", stdin="short\n")
    assert_refused(short, "at least 8 characters")
    empty = await user_create(service, tmp_path, "--org", org.id, "--email",
                              "di@acme.example", stdin="")
    assert_refused(empty, "at least 8 characters")
    for email in ("not-an-email", "a@b", "a b@c.example", "@acme.example"):
        bad = await user_create(service, tmp_path, "--org", org.id, "--email", email,
                                stdin="long enough secret\n")
        assert_refused(bad, "is not an email address")

    async with service.runtime.db.read() as conn:
        repo = Repository(conn)
        assert await repo.user_by_email("cy@acme.example") is None
        assert await repo.user_by_email("di@acme.example") is None


async def test_help_mentions_user_create(service: Service, tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        subprocess.run, hookstream_cmd("user", "create", "--help"), cwd=tmp_path,
        env=settings_env(service.settings), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0
    assert "--org" in done.stdout and "--email" in done.stdout
    assert "standard input" in done.stdout
