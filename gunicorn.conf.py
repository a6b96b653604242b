"""gunicorn's settings for the web app (read from the working directory by `gunicorn`).

Threads: a request spends most of its time waiting on PostgreSQL and Redis, so each process
serves several at once. WEB_CONCURRENCY processes x WEB_THREADS threads.

Limits: gunicorn's request line may be as long as gunicorn allows (8190 bytes), so that the
app's own, shorter limit (API_MAX_URL_BYTES, 414 uri_too_long) is the one clients meet; a
header field may be 8190 bytes. What gunicorn itself refuses before the app sees it (a longer
request line or header, a malformed request) is answered in the API's error shape too."""

import json
import os
import sys
from pathlib import Path

import environ

# gunicorn reads this file before it imports the app: the project on the path, `.env` read
# as the settings read it.
_ROOT = Path(__file__).resolve().parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
environ.Env.read_env(_ROOT / ".env", overwrite=False)

from core.logging import build_logging  # noqa: E402

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 30
keepalive = 5
limit_request_line = 8190
limit_request_field_size = 8190
# gunicorn's own lines (master, workers, and the access log when one is asked for) in the
# shape and level of every other line (LOG_FORMAT, LOG_LEVEL; core.logging).
logconfig_dict = build_logging()

_ERROR_CODES = {
    400: "bad_request",
    403: "permission_denied",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own error answer (gunicorn.util.write_error) in the API's error shape
    instead of an HTML page."""
    from gunicorn import util

    body = json.dumps(
        {
            "error": {
                "code": _ERROR_CODES.get(status_int, "bad_request"),
                "message": f"{reason}: {mesg}",
                "details": {},
            }
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def on_starting(server):
    """In the master, before workers fork: they inherit the JSON error writer."""
    from gunicorn import util

    util.write_error = write_json_error


def post_worker_init(worker):
    """Once the app is loaded: see signal_project/gc_settings.py."""
    from signal_project.gc_settings import freeze_loaded_code

    freeze_loaded_code()


def child_exit(server, worker):
    """In the master, when a worker exits: its live-gauge metric files are removed (its
    counters stay in the sums of /metrics; core/metrics_process.py)."""
    from core.metrics_process import process_exited

    process_exited(worker.pid)
