"""Requests per second per API key, counted in Redis (fixed one-second windows).

While Redis does not answer, requests are let through uncounted (and a warning logged) rather
than refused: the rate limit protects the service, and refusing every request while Redis
restarts would be the outage it is meant to prevent. Redis is not asked again for a second
after a failure, so requests do not each wait for its timeout.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)
_UNCOUNTED_SECONDS = 1.0
_state = {"skip_until": 0.0, "warned_at": float("-inf")}


def clock() -> float:
    """The wall clock the windows are cut from (a seam for tests, which must not patch the
    process-wide time.time)."""
    return time.time()


@lru_cache(maxsize=1)
def _redis() -> redis.Redis | None:
    """The cache's Redis, or None when the cache is not Redis (the zero-setup fallback)."""
    if not settings.CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        return None
    return redis.Redis.from_url(settings.CACHE_URL, socket_timeout=2, socket_connect_timeout=1)


def _counted(key: str) -> int | None:
    """The window's count, or None while Redis does not answer."""
    now = time.monotonic()
    if now < _state["skip_until"]:
        return None
    try:
        return _count(key)
    except redis.RedisError as exc:
        _state["skip_until"] = now + _UNCOUNTED_SECONDS
        if now - _state["warned_at"] > 10:
            _state["warned_at"] = now
            logger.warning("Rate limit not counted: Redis does not answer (%s)", exc)
        return None


def _count(key: str) -> int:
    """Increments the window's counter; one round trip to Redis (INCR and a TTL set only by
    the first request of the window)."""
    client = _redis()
    if client is None:
        cache.add(key, 0, timeout=2)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=2)
            return 1
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 2, nx=True)
    count, _ = pipe.execute()
    return count


class ApiKeyRateThrottle(BaseThrottle):
    """At most settings.API_RATE_LIMIT requests in each wall-clock second per key.

    Counted with atomic increments in Redis, so concurrent web processes share the count
    exactly."""

    def allow_request(self, request, view) -> bool:
        api_key = getattr(request, "auth", None)
        limit = settings.API_RATE_LIMIT
        if api_key is None or limit <= 0:
            return True
        now = clock()
        window = int(now)
        count = _counted(f"signal:ratelimit:{api_key.pk}:{window}")
        self._wait = (window + 1) - now
        return count is None or count <= limit

    def wait(self) -> float:
        return self._wait
