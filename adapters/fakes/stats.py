"""What a fake provider received, counted, for tests and benchmarks to read at /__stats."""

from __future__ import annotations

from collections import Counter
from typing import Any


class Stats:
    """Counters of requests by outcome, status and token prefix."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self._prefixes = prefixes
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_status: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self.by_prefix: Counter[str] = Counter()
        self.extra: Counter[str] = Counter()

    def prefix_of(self, token: str) -> str:
        for prefix in self._prefixes:
            if token.startswith(prefix):
                return prefix
        return "other"

    def record(self, status: int, reason: str | None, prefix: str) -> None:
        self.requests += 1
        self.by_status[str(status)] += 1
        self.by_reason[reason or "Success"] += 1
        self.by_prefix[prefix] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "by_reason": dict(self.by_reason),
            "by_prefix": dict(self.by_prefix),
            **dict(self.extra),
        }
