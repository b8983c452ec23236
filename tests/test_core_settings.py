"""Settings: defaults, parsing of HOOKSTREAM_* values and refusal of unsafe configurations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hookstream.errors import ConfigurationError
from hookstream.settings import DEFAULT_RETRY_SCHEDULE, Settings, load_settings

PG = "postgresql://hookstream@db.internal/hookstream"
REAL_KEY = "9f2c0a6b1e7d4c3aa5b8e1f0d2c4b6a8"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HOOKSTREAM_* variable or .env file of the machine leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("HOOKSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def settings(**kwargs: Any) -> Settings:
    return Settings(_env_file=None, **kwargs)


def test_defaults() -> None:
    s = settings()
    assert s.database_url == "sqlite:///var/hookstream.db"
    assert s.is_sqlite
    assert s.listen == "127.0.0.1:8000"
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.mqtt_url is None
    assert s.allow_private_targets is False
    assert s.secrets_key is None
    assert s.admin_key is None
    assert s.retry_schedule == DEFAULT_RETRY_SCHEDULE


def test_default_retry_schedule_is_long_and_increasing() -> None:
    assert DEFAULT_RETRY_SCHEDULE[0] == 5.0
    assert list(DEFAULT_RETRY_SCHEDULE) == sorted(DEFAULT_RETRY_SCHEDULE)
    assert sum(DEFAULT_RETRY_SCHEDULE) > 24 * 3600


def test_retry_schedule_from_a_comma_separated_string() -> None:
    assert settings(retry_schedule="5,300,1800").retry_schedule == (5.0, 300.0, 1800.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5, 300 ,1800", (5.0, 300.0, 1800.0)),
        ("[1,2]", (1.0, 2.0)),
        ("0.5", (0.5,)),
        ("0,0", (0.0, 0.0)),
        ("", ()),
    ],
)
def test_retry_schedule_string_forms(raw: str, expected: tuple[float, ...]) -> None:
    assert settings(retry_schedule=raw).retry_schedule == expected


def test_retry_schedule_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_RETRY_SCHEDULE", "5,300,1800")
    assert settings().retry_schedule == (5.0, 300.0, 1800.0)


@pytest.mark.parametrize("raw", ["5,-1", "a,b", "5;300"])
def test_bad_retry_schedule_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError, match="retry_schedule"):
        settings(retry_schedule=raw)


@pytest.mark.parametrize("raw", ["5,nan", "inf"])
def test_non_finite_retry_delays_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        settings(retry_schedule=raw)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_LISTEN", "0.0.0.0:9001")
    monkeypatch.setenv("HOOKSTREAM_ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("HOOKSTREAM_MQTT_URL", "mqtt://127.0.0.1:1883")
    s = settings()
    assert (s.host, s.port) == ("0.0.0.0", 9001)
    assert s.allow_private_targets is True
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / "custom.env"
    env.write_text("HOOKSTREAM_LISTEN=127.0.0.1:8123\nHOOKSTREAM_RETRY_SCHEDULE=1,2\n")
    s = Settings(_env_file=env)
    assert s.port == 8123
    assert s.retry_schedule == (1.0, 2.0)


# --- secrets with PostgreSQL -----------------------------------------------------------------


@pytest.mark.parametrize("url", [PG, "postgres://u@h/db", "postgresql+asyncpg://u@h/db"])
def test_postgresql_without_secrets_key_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="HOOKSTREAM_SECRETS_KEY"):
        settings(database_url=url)


def test_load_settings_names_the_missing_variable() -> None:
    with pytest.raises(ConfigurationError, match="HOOKSTREAM_SECRETS_KEY") as info:
        load_settings(_env_file=None, database_url=PG)
    assert isinstance(info.value.__cause__, ValidationError)


def test_load_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_DATABASE_URL", PG)
    with pytest.raises(ConfigurationError, match="HOOKSTREAM_SECRETS_KEY"):
        load_settings(_env_file=None)
    monkeypatch.setenv("HOOKSTREAM_SECRETS_KEY", REAL_KEY)
    s = load_settings(_env_file=None)
    assert not s.is_sqlite
    assert s.secrets_key is not None
    assert s.secrets_key.get_secret_value() == REAL_KEY


@pytest.mark.parametrize(
    "placeholder", ["change-me", "CHANGE-ME", " changeme ", "secret", "example", "test", "", "  "]
)
def test_placeholder_secrets_key_is_refused(placeholder: str) -> None:
    with pytest.raises(ValidationError, match="HOOKSTREAM_SECRETS_KEY"):
        settings(database_url=PG, secrets_key=placeholder)


def test_real_secrets_key_is_accepted_with_postgresql() -> None:
    s = settings(database_url=PG, secrets_key=REAL_KEY)
    assert not s.is_sqlite
    # A secret is not printed by accident.
    assert REAL_KEY not in repr(s)
    assert REAL_KEY not in str(s.secrets_key)


def test_placeholder_admin_key_is_refused_with_postgresql() -> None:
    with pytest.raises(ValidationError, match="HOOKSTREAM_ADMIN_KEY"):
        settings(database_url=PG, secrets_key=REAL_KEY, admin_key="change-me")


def test_sqlite_without_secrets_key_is_fine() -> None:
    for url in ("sqlite:///var/hookstream.db", "sqlite:///:memory:", "sqlite+aiosqlite:///x.db"):
        s = settings(database_url=url)
        assert s.is_sqlite
        assert s.secrets_key is None


@pytest.mark.parametrize("url", ["mysql://u@h/db", "http://h/db", "var/hookstream.db", ""])
def test_unknown_database_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="HOOKSTREAM_DATABASE_URL"):
        settings(database_url=url)


# --- listen address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listen", ["localhost", "8000", ":8000", "127.0.0.1:", "127.0.0.1:http", "h:70000", "h:-1", ""]
)
def test_bad_listen_is_refused(listen: str) -> None:
    with pytest.raises(ValidationError, match="HOOKSTREAM_LISTEN"):
        settings(listen=listen)


def test_bad_listen_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_LISTEN", "nope")
    with pytest.raises(ConfigurationError, match="HOOKSTREAM_LISTEN"):
        load_settings(_env_file=None)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("0.0.0.0:80", "0.0.0.0", 80), ("localhost:65535", "localhost", 65535), ("h:0", "h", 0)],
)
def test_listen_host_and_port(listen: str, host: str, port: int) -> None:
    s = settings(listen=listen)
    assert (s.host, s.port) == (host, port)


def test_bracketed_ipv6_listen_gives_a_bindable_host() -> None:
    s = settings(listen="[::1]:8000")
    assert (s.host, s.port) == ("::1", 8000)


def test_retry_jitter_bounds() -> None:
    assert settings(retry_jitter=0).retry_jitter == 0
    with pytest.raises(ValidationError):
        settings(retry_jitter=1.5)
    with pytest.raises(ValidationError):
        settings(retry_jitter=-0.1)


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(ValidationError):
        s.listen = "0.0.0.0:1"  # type: ignore[misc]
