"""How many of a thing an organization may have (the HOOKSTREAM_MAX_*_PER_ORG settings)."""

from __future__ import annotations

from hookstream.errors import Conflict


def check_quota(count: int, most: int, things: str, setting: str) -> None:
    """Conflict (``limit_reached``) when an organization with ``count`` may not add one more."""
    if count >= most:
        raise Conflict(
            f"the organization has {most} {things}, the most allowed ({setting}); "
            "delete one first",
            code="limit_reached",
        )
