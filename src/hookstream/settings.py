"""Every setting hookstream reads, in one typed object (environment and ``.env``)."""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hookstream.errors import ConfigurationError

# Placeholders people paste from examples; refused wherever a real secret is required.
_PLACEHOLDERS = {"", "change-me", "changeme", "secret", "example", "test", "xxx"}

# Svix's schedule after the first, immediate attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(BaseSettings):
    """Configuration from ``HOOKSTREAM_*`` variables (a ``.env`` file is read too)."""

    model_config = SettingsConfigDict(
        env_prefix="HOOKSTREAM_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite:///var/hookstream.db"
    listen: str = "127.0.0.1:8000"
    admin_key: SecretStr | None = None
    secrets_key: SecretStr | None = None
    mqtt_url: str | None = None
    # The bridge's MQTT client id: stable across restarts (its broker session, and what was
    # queued in it while it was away, is found by this id) and distinct for every bridge.
    mqtt_client_id: str = Field(default="hookstream-bridge", min_length=1, max_length=128)
    # Several bridges with the same group share the load (MQTT 5 shared subscriptions).
    mqtt_shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # The broker keeps the bridge's session (and queues for it) this long after it leaves.
    mqtt_session_expiry_seconds: int = Field(default=7 * 86400, ge=1, le=2**32 - 1)
    # Messages the broker may hand over before the bridge acknowledges (stored) any of them.
    mqtt_receive_maximum: int = Field(default=1000, ge=1, le=65535)
    # Messages stored per transaction.
    mqtt_batch: int = Field(default=500, ge=1)
    mqtt_reconnect_max_seconds: int = Field(default=30, ge=1)
    # A publish whose bytes (same gateway and kind) were stored this recently is a redelivery.
    mqtt_deduplicate_seconds: float = Field(default=86400.0, ge=0)
    allow_private_targets: bool = False
    # Networks outgoing requests may reach although they are private or reserved
    # (comma-separated CIDRs), e.g. one internal receiver's subnet instead of all of them.
    allowed_target_networks: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = ()
    # Refuse plain http:// for every outgoing request.
    https_only: bool = False
    # Logs: "text" for people, "json" for one JSON object per line (with delivery and message
    # ids as fields).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # host:port where roles without the API (worker, mqtt) serve /metrics; unset: none.
    metrics_listen: str | None = None
    # How often the queue gauges of /metrics are sampled from the database.
    metrics_sample_seconds: float = Field(default=5.0, gt=0)
    data_dir: Path = Path("var")

    # What survives a power loss on SQLite: "full" fsyncs every commit (a 202 survives a
    # power cut), "normal" survives a crash of any process but may lose the last commits
    # on power loss.
    sqlite_synchronous: Literal["full", "normal"] = "full"

    # Delivery
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = Field(default=0.1, ge=0, le=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    request_timeout: float = Field(default=15.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    worker_concurrency: int = Field(default=256, ge=1)
    # Worker processes ``serve`` starts beside its API (0: the worker runs inside it);
    # unset: one when the machine has two cores or more.
    workers: int | None = Field(default=None, ge=0, le=64)
    # Processes ``serve`` runs its API in, sharing one listening socket; unset: one below four
    # cores, else half the cores. Each counts API-key and ingest rate limits on its own.
    api_processes: int | None = Field(default=None, ge=1, le=64)
    claim_batch: int = Field(default=256, ge=1)
    # Requests in flight to one connector across every worker (a connector may set its own).
    connector_max_concurrency: int = Field(default=64, ge=1)
    record_batch: int = Field(default=512, ge=1)
    record_flush_ms: float = Field(default=20.0, gt=0)

    # After rotate-secret, the previous secret keeps signing for this long.
    secret_grace_seconds: float = Field(default=86400.0, ge=0)
    # A connector whose every attempt failed for this long is switched off (5 days).
    deactivate_after_failing_seconds: float = Field(default=5 * 86400.0, gt=0)
    # An OAuth2 token is fetched again this long before it expires.
    oauth2_refresh_margin_seconds: float = Field(default=30.0, ge=0)
    # A connector's transform may run this long on one message (or batch); past it the
    # delivery fails (its child process is killed: pipeline/deliver/sandbox.py).
    transform_timeout_ms: float = Field(default=50.0, gt=0, le=10_000)

    # Ingest: an Idempotency-Key is honoured once within this window.
    idempotency_window_seconds: float = Field(default=86400.0, gt=0)
    # The plug-ins to load, comma-separated ("" for none); unset: every installed one.
    plugins: str | None = None
    # Retention: messages, deliveries and attempts older than this are purged (30 days),
    # in batches of retention_batch rows, every retention_interval seconds.
    retention_seconds: float = Field(default=30 * 86400.0, gt=0)
    retention_batch: int = Field(default=1000, ge=1)
    retention_interval: float = Field(default=60.0, gt=0)

    # The thermostat cloud's authorization server: lifetimes of what it issues.
    oauth_access_token_seconds: int = Field(default=3600, ge=1)
    oauth_refresh_token_seconds: int = Field(default=90 * 86400, ge=1)
    oauth_code_seconds: int = Field(default=600, ge=1)
    # Console sign-in: a session lasts this long; cookies are Secure when the request came
    # over https (or always / never when set).
    console_session_seconds: int = Field(default=12 * 3600, ge=60)
    console_secure_cookies: bool | None = None
    # /smarther/v2.0: requests per minute per subscription key (a token bucket of that size).
    subscription_key_rate_per_minute: int = Field(default=600, ge=1)
    # Rotating an API key, ingest token or subscription key: the previous one keeps working
    # this long unless the request says otherwise (0 revokes it at once).
    key_rotation_overlap_seconds: int = Field(default=86400, ge=0, le=30 * 86400)

    # Limits. A datastream message: tags, and the length of its optional strings (and of each
    # tag's key and value); the format's own limits (1,000 per batch, 1 MiB) are the contract's.
    message_max_tags: int = Field(default=64, ge=0)
    message_max_string_length: int = Field(default=1024, ge=1)
    # Bodies of /api/v1, /smarther and /oauth2 requests (ingest has its 1 MiB).
    api_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Per organization.
    max_connectors_per_org: int = Field(default=100, ge=1)
    max_triggers_per_org: int = Field(default=1000, ge=1)
    # Requests per minute per organization API key and per ingest token (token buckets of
    # that size, per API process; 0 turns the limit off).
    api_key_rate_per_minute: int = Field(default=1200, ge=0)
    ingest_token_rate_per_minute: int = Field(default=60_000, ge=0)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.strip("[] ").split(",") if p.strip()]
            return tuple(float(p) for p in parts)
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not math.isfinite(v) or v < 0 for v in value):
            raise ValueError("retry delays must be finite numbers of seconds, zero or more")
        return value

    @field_validator("allowed_target_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p.strip() for p in value.strip("[] ").split(",") if p.strip()]
        if isinstance(value, list | tuple):
            networks = []
            for item in value:
                try:
                    networks.append(ipaddress.ip_network(item))
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"HOOKSTREAM_ALLOWED_TARGET_NETWORKS: {item!r} is not a network in CIDR "
                        f"form such as 10.1.0.0/16 or fd00:1::/64 ({exc})"
                    ) from None
            return tuple(networks)
        return value

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _check_listen(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        bare = host.removeprefix("[").removesuffix("]")
        bad_v6 = ":" in bare and not (host.startswith("[") and host.endswith("]"))
        if not sep or not bare or bad_v6 or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(
                f"HOOKSTREAM_{str(info.field_name).upper()} must be HOST:PORT, "
                "e.g. 127.0.0.1:8000 or [::1]:8000"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgres:",
                                 "postgresql+asyncpg:")):
            raise ValueError("HOOKSTREAM_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _refuse_missing_secrets(self) -> Settings:
        if self.is_sqlite:
            return self
        key = self.secrets_key.get_secret_value() if self.secrets_key else ""
        if key.strip().lower() in _PLACEHOLDERS:
            raise ValueError(
                "HOOKSTREAM_SECRETS_KEY is required with PostgreSQL and must be the same in "
                "every process (create one with: hookstream keys secrets)"
            )
        if self.admin_key is not None and (
            self.admin_key.get_secret_value().strip().lower() in _PLACEHOLDERS
        ):
            raise ValueError("HOOKSTREAM_ADMIN_KEY is a placeholder; set a random key or unset it")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].removeprefix("[").removesuffix("]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning a validation failure into one readable ConfigurationError."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("; ".join(lines)) from exc


def plugin_names(settings: Settings) -> list[str] | None:
    """``HOOKSTREAM_PLUGINS`` as names, or None for every installed plug-in."""
    if settings.plugins is None:
        return None
    return [name.strip() for name in settings.plugins.split(",") if name.strip()]
