"""Settings for the test suite: the project's, with Redis databases of the tests' own, so a
running `make run` (database 0) keeps its broker and cache. The cache gets a database apart
from the broker's, because tests empty the cache (FLUSHDB) and must not empty queues."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/14")

from signal_project.settings import *  # noqa: E402, F403

# The fake push service's endpoints are http://127.0.0.1:PORT/push/... (fakes.webpush_server).
WEB_PUSH_ALLOWED_HOSTS = [*WEB_PUSH_ALLOWED_HOSTS, "127.0.0.1"]  # noqa: F405
