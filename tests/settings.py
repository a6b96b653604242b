"""Settings for the test suite: the project's, with Redis databases of the tests' own, so a
running `make run` (database 0) keeps its broker and cache. The cache gets a database apart
from the broker's, because tests empty the cache (FLUSHDB) and must not empty queues."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/14")
# The test client, the live server and the processes the e2e tests start speak plain HTTP with
# DEBUG off: no redirect to HTTPS and no Secure-only cookies there (tests that check the
# production defaults set them on).
for _name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(_name, "false")
# Metric files of this run's processes (the tests' and the workers they start) only.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _metrics_dir = tempfile.mkdtemp(prefix="signal-test-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    atexit.register(shutil.rmtree, _metrics_dir, ignore_errors=True)

from signal_project.settings import *  # noqa: E402, F403

# The fake push service's endpoints are http://127.0.0.1:PORT/push/... (fakes.webpush_server).
WEB_PUSH_ALLOWED_HOSTS = [*WEB_PUSH_ALLOWED_HOSTS, "127.0.0.1"]  # noqa: F405
