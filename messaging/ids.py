"""Time-ordered UUIDs (the layout of RFC 9562's version 7) for subscriptions (Subscription.id's
default) and messages (sending.message_send, which makes every message the service sends,
gives each one; Message.id's own default is still uuid4, so a message made another way, as
with Message.objects.create, gets a random key).

Random (version 4) keys scatter every insert across the whole primary-key index, and across
every index that leads with the key (events by message): at millions of rows each insert
touches a cold page. Keys that grow with time append instead. And a table read in key order
(a campaign's audience, walked by subscription id) is then read in the order its rows were
written: page after page, not one random page per row.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """48 bits of Unix milliseconds (now, or `unix_ms`), then version 7, then 74 random bits."""
    if unix_ms is None:
        unix_ms = time.time_ns() // 1_000_000
    value = unix_ms << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)
