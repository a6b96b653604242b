"""gunicorn's settings for the web app (read from the working directory by `gunicorn`).

Threads: a request spends most of its time waiting on PostgreSQL and Redis, so each process
serves several at once. WEB_CONCURRENCY processes x WEB_THREADS threads."""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 30
keepalive = 5


def post_worker_init(worker):
    """Once the app is loaded, its objects (modules, classes, Django's and DRF's set-up: about
    100,000) move to the collector's permanent generation. Otherwise every full collection
    walks them all while holding the GIL: 40-90 ms in which this process answers nothing, the
    API's slowest requests under load (bench/RESULTS.md)."""
    import gc

    gc.freeze()
