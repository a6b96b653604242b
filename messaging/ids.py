"""Time-ordered UUIDs (the layout of RFC 9562's version 7) for rows written in bulk.

Random (version 4) keys scatter every insert across the whole primary-key index, and across
every index that leads with the key (events by message): at millions of rows each insert
touches a cold page. Keys that grow with time append instead.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """48 bits of Unix milliseconds, then version 7, then 74 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)
