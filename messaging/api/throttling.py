"""Requests per second per API key, counted in Redis (fixed one-second windows)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle


def clock() -> float:
    """The wall clock the windows are cut from (a seam for tests, which must not patch the
    process-wide time.time)."""
    return time.time()


class ApiKeyRateThrottle(BaseThrottle):
    """At most settings.API_RATE_LIMIT requests in each wall-clock second per key.

    One atomic INCR per request, so concurrent web workers share the count exactly.
    """

    def allow_request(self, request, view) -> bool:
        api_key = getattr(request, "auth", None)
        limit = settings.API_RATE_LIMIT
        if api_key is None or limit <= 0:
            return True
        now = clock()
        window = int(now)
        key = f"ratelimit:{api_key.pk}:{window}"
        # add() sets the counter with a TTL only if absent; incr() is atomic in Redis.
        cache.add(key, 0, timeout=2)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=2)
            count = 1
        self._wait = (window + 1) - now
        return count <= limit

    def wait(self) -> float:
        return self._wait
