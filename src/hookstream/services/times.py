"""Times as the contract spells them: RFC 3339 with milliseconds in UTC, read back to epoch ms."""

from __future__ import annotations

from datetime import UTC, datetime

from hookstream.errors import ValidationFailed


def rfc3339(ms: int | None) -> str | None:
    """Epoch milliseconds as ``2026-01-31T12:00:00.000Z`` (None stays None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def parse_time(value: str | None, name: str) -> int | None:
    """An RFC 3339 time named ``name`` as epoch milliseconds; ValidationFailed when malformed."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValidationFailed(
            f"'{name}' must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
            details=[{"field": name, "message": "not an RFC 3339 time"}],
        ) from None
    if parsed.tzinfo is None:
        raise ValidationFailed(
            f"'{name}' needs a time zone offset, e.g. 2026-01-31T12:00:00Z",
            details=[{"field": name, "message": "no time zone offset"}],
        )
    return int(parsed.timestamp() * 1000)
