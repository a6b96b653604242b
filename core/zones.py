"""Time zones by IANA name, as subscriptions, preferences and campaigns give them."""

from __future__ import annotations

from datetime import UTC, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=1024)
def zone_of(name: str | None) -> tzinfo:
    """The time zone named `name`; UTC for none or an unknown name (a subscription's time
    zone is whatever its device reported)."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
