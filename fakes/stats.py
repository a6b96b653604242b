"""What a fake provider received, counted, for tests and benchmarks to read at /__stats."""

from __future__ import annotations

from collections import Counter
from contextvars import ContextVar
from typing import Any

# The client address of the request being answered, set by the protocols that track tokens.
PEER: ContextVar[str] = ContextVar("fake_peer", default="")


def peer_of(transport) -> str:
    """The client's address of a connection ("" when unknown)."""
    extra = getattr(transport, "get_extra_info", None)
    peer = extra("peername") if extra is not None else None
    return str(peer[0]) if peer else ""


class Stats:
    """Counters of requests by outcome, status and token prefix.

    `record` is on every request's path, so it bumps one counter keyed by (status, reason,
    prefix); `snapshot` adds them up into the published shape.
    """

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self._prefixes = prefixes
        # When no prefix starts another, a token has at most one: look it up by length.
        overlapping = any(a != b and b.startswith(a) for a in prefixes for b in prefixes)
        self._lengths = None if overlapping else sorted({len(p) for p in prefixes})
        self._prefix_set = frozenset(prefixes)
        self.reset()

    # With tracking on (python -m fakes --track-tokens), each accepted token is counted, and the
    # client address that sent it: a test finds duplicates and who sent what.
    tracking = False

    def reset(self) -> None:
        self._counts: Counter[tuple[int, str | None, str]] = Counter()
        self.extra: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.peers: Counter[str] = Counter()

    def track(self, token: str) -> None:
        """One delivery of `token` accepted (only when tracking), from the current request's
        client address (PEER)."""
        self.tokens[token] += 1
        self.peers[PEER.get()] += 1

    @property
    def requests(self) -> int:
        return sum(self._counts.values())

    def prefix_of(self, token: str) -> str:
        if self._lengths is not None:
            prefixes = self._prefix_set
            for length in self._lengths:
                if token[:length] in prefixes:
                    return token[:length]
            return "other"
        for prefix in self._prefixes:
            if token.startswith(prefix):
                return prefix
        return "other"

    def record(self, status: int, reason: str | None, prefix: str) -> None:
        self._counts[status, reason, prefix] += 1

    def snapshot(self) -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        by_prefix: Counter[str] = Counter()
        for (status, reason, prefix), count in self._counts.items():
            by_status[str(status)] += count
            by_reason[reason or "Success"] += count
            by_prefix[prefix] += count
        return {
            "requests": self.requests,
            "by_status": dict(by_status),
            "by_reason": dict(by_reason),
            "by_prefix": dict(by_prefix),
            **dict(self.extra),
            **({"tokens": dict(self.tokens), "peers": dict(self.peers)} if self.tracking else {}),
        }
