"""What every role of a process shares: settings, database, secret box, admin key, wake-ups."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from hookstream.ids import hash_key, new_key
from hookstream.pipeline.ingest.auth import GatewayTokens
from hookstream.pipeline.queue.wakeup import Wakeup
from hookstream.readiness import Readiness
from hookstream.security.ratelimit import RateLimiter
from hookstream.security.secretbox import SecretBox, load_secrets_key
from hookstream.settings import Settings, plugin_names
from hookstream.storage.database import Database, database_errors
from hookstream.storage.repository import Repository
from hookstream.tracing import Tracing

if TYPE_CHECKING:
    from hookstream.pipeline.deliver.sandbox import TransformRunner
    from hookstream.pipeline.ingest.intake import Intake
    from hookstream.pipeline.message import MessageLimits
    from hookstream.services.plugins import Plugin

ADMIN_KEY_META = "admin_key_hash"


@dataclass
class Runtime:
    settings: Settings
    db: Database
    box: SecretBox
    admin_key_hash: str = ""
    # Set when this process generated the admin key (printed once by the caller).
    new_admin_key: str | None = None
    wakeup: Wakeup = field(default_factory=Wakeup)
    readiness: Readiness = field(default_factory=Readiness)
    gateway_tokens: GatewayTokens = field(init=False)
    subscription_key_limiter: RateLimiter = field(init=False)
    # None when the setting is 0 (no limit).
    api_key_limiter: RateLimiter | None = field(init=False)
    ingest_token_limiter: RateLimiter | None = field(init=False)
    started_at: float = field(default_factory=time.time)
    # The plug-ins this process runs (services.plugins): their intake hooks and routes.
    plugins: list[Plugin] = field(default_factory=list)
    # OpenTelemetry, when the OTEL_* variables turn it on (tracing.py).
    tracing: Tracing | None = None

    def __post_init__(self) -> None:
        self.gateway_tokens = GatewayTokens(self.db)
        s = self.settings
        self.subscription_key_limiter = RateLimiter(s.subscription_key_rate_per_minute, 60.0)
        self.api_key_limiter = (
            RateLimiter(s.api_key_rate_per_minute, 60.0) if s.api_key_rate_per_minute else None
        )
        self.ingest_token_limiter = (
            RateLimiter(s.ingest_token_rate_per_minute, 60.0)
            if s.ingest_token_rate_per_minute else None
        )

    # Ingest's parts are made on first use: a process without the API (a delivery worker)
    # never imports message validation and routing.
    @cached_property
    def intake(self) -> Intake:
        """Where every transport stores what it accepted (with the plug-ins' hooks)."""
        from hookstream.pipeline.ingest.intake import Intake

        return Intake(self.db, hooks=[h for p in self.plugins for h in p.intake_hooks],
                      tracing=self.tracing)

    @cached_property
    def message_limits(self) -> MessageLimits:
        from hookstream.pipeline.message import MessageLimits

        s = self.settings
        return MessageLimits(s.message_max_tags, s.message_max_string_length)

    @cached_property
    def transforms(self) -> TransformRunner:
        """Where this process runs transforms (previews, the test button): child processes
        started on first use."""
        from hookstream.pipeline.deliver.sandbox import TransformRunner

        return TransformRunner(self.settings.transform_timeout_ms)

    @classmethod
    async def open(cls, settings: Settings, plugins: list[Plugin] | None = None) -> Runtime:
        """Everything a process shares; ``plugins`` by default as HOOKSTREAM_PLUGINS says."""
        from hookstream.services import plugins as found

        box = SecretBox(load_secrets_key(settings))
        loaded = found.load(plugin_names(settings)) if plugins is None else plugins
        tracing = Tracing.from_environ()
        db = Database(settings)
        runtime = cls(settings=settings, db=db, box=box, plugins=loaded, tracing=tracing)
        try:
            async with database_errors(settings.database_url):
                await runtime._load_admin_key()
        except BaseException:
            await runtime.close()
            raise
        return runtime

    async def close(self) -> None:
        if "transforms" in self.__dict__:  # started only when used
            await self.transforms.close()
        await self.db.dispose()
        if self.tracing is not None:
            # Exports what is buffered; off the loop, as the exporter's HTTP is blocking.
            await asyncio.to_thread(self.tracing.shutdown)

    async def _load_admin_key(self) -> None:
        if self.settings.admin_key is not None:
            self.admin_key_hash = hash_key(self.settings.admin_key.get_secret_value())
            return
        async with self.db.read() as conn:
            stored = await Repository(conn).get_meta(ADMIN_KEY_META)
        if stored is not None:
            self.admin_key_hash = stored
            return
        key = new_key("hsa")
        try:
            async with self.db.write() as conn:
                await Repository(conn).insert_meta(ADMIN_KEY_META, hash_key(key))
        except IntegrityError:  # another process generated it first
            async with self.db.read() as conn:
                self.admin_key_hash = await Repository(conn).get_meta(ADMIN_KEY_META) or ""
            return
        self.admin_key_hash = hash_key(key)
        self.new_admin_key = key
        if self.settings.is_sqlite:
            write_private(Path(self.settings.data_dir) / "admin.key", key)


def write_private(path: Path, content: str) -> None:
    """Write a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content + "\n")
