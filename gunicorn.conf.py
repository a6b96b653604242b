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
    """Once the app is loaded: see signal_project/gc_settings.py."""
    from signal_project.gc_settings import freeze_loaded_code

    freeze_loaded_code()
