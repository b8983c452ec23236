"""Logging set-up: lines for people, or JSON lines (``HOOKSTREAM_LOG_FORMAT=json``) for machines."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from hookstream.settings import Settings

# Fields the code passes with ``extra=`` that belong in a JSON line.
FIELDS = (
    "delivery_id", "message_id", "webhook_id", "connector_id", "org_id", "gateway_id",
    "attempt", "status_code", "outcome", "topic", "reason",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ids, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(settings: Settings) -> None:
    """Log to standard error in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
