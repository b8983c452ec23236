"""The command line: clear messages and non-zero exits for bad set-ups."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support import hookstream_cmd


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    full_env.update(env)
    return subprocess.run(hookstream_cmd(*args), cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=60)


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("serve", "api", "worker", "migrate", "org", "receive"):
        assert command in done.stdout
    assert run("org", "create", "--help", cwd=tmp_path).returncode == 0


def test_migrate_then_org_create_prints_the_key_once(tmp_path: Path) -> None:
    assert run("migrate", cwd=tmp_path).returncode == 0
    done = run("org", "create", "Acme Heating", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"id", "name", "apiKey"}
    assert body["name"] == "Acme Heating" and body["id"].startswith("org_")
    stored = (tmp_path / "var" / "hookstream.db").read_bytes()
    assert body["apiKey"].encode() not in stored, "API keys are stored hashed"


def test_roles_refuse_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    for role in ("worker", "api"):
        done = run(role, cwd=tmp_path)
        assert done.returncode == 2
        assert "hookstream migrate" in done.stderr
        assert "Traceback" not in done.stderr


def test_postgresql_without_a_secrets_key_is_refused(tmp_path: Path) -> None:
    done = run("worker", cwd=tmp_path,
               HOOKSTREAM_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 2
    assert "HOOKSTREAM_SECRETS_KEY" in done.stderr and "Traceback" not in done.stderr
    placeholder = run("worker", cwd=tmp_path, HOOKSTREAM_SECRETS_KEY="change-me",
                      HOOKSTREAM_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert placeholder.returncode == 2 and "HOOKSTREAM_SECRETS_KEY" in placeholder.stderr


def test_bad_settings_get_a_message_not_a_traceback(tmp_path: Path) -> None:
    for name, value in (("HOOKSTREAM_LISTEN", "nowhere"),
                        ("HOOKSTREAM_DATABASE_URL", "mysql://x/y"),
                        ("HOOKSTREAM_RETRY_SCHEDULE", "5,soon")):
        done = run("migrate", cwd=tmp_path, **{name: value})
        assert done.returncode == 2, (name, done.stderr)
        assert "configuration error" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_database_is_a_message(tmp_path: Path) -> None:
    done = run("migrate", cwd=tmp_path, HOOKSTREAM_SECRETS_KEY="x" * 44,
               HOOKSTREAM_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "database" in done.stderr.lower()


def test_receive_refuses_a_malformed_secret(tmp_path: Path) -> None:
    done = run("receive", "--secret", "not-a-secret", cwd=tmp_path)
    assert done.returncode == 2 and "whsec_" in done.stderr
