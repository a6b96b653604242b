"""Structured logs (core.logging, core.middleware): the lines' shape in both formats, request
ids kept, made and echoed, carried into the tasks a request publishes, and Celery's lines
about the periodic tasks kept out of an INFO log."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from celery import current_app
from celery.signals import before_task_publish
from kombu import Connection

from core.middleware import request_id_from
from messaging import dispatch

ROOT = Path(__file__).resolve().parents[2]

# Logs through the project's settings in a process of its own: a line of ours with a bound
# context and an `extra` field, a library's line, an exception, and a structlog logger's line.
SCRIPT = """
import logging, os
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "signal_project.settings"
django.setup()
import structlog
structlog.contextvars.bind_contextvars(request_id="r-1", task_id="t-1", campaign_id="c-1")
logging.getLogger("messaging.example").info("sent %d", 3, extra={"message_id": "m-1", "x": 1})
logging.getLogger("django.request").warning("Not Found: %s", "/nowhere")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("messaging.example").exception("it failed")
structlog.get_logger("campaigns.example").warning("native", batch=2)
"""


def run_script(log_format: str) -> str:
    env = {**os.environ, "LOG_FORMAT": log_format, "LOG_LEVEL": "INFO"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_json_lines_carry_the_fields_and_the_bound_context():
    lines = [json.loads(line) for line in run_script("json").splitlines()]

    ours, library, failed, native = lines
    assert ours["event"] == "sent 3" and ours["level"] == "info"
    assert ours["logger"] == "messaging.example"
    assert (ours["request_id"], ours["task_id"], ours["campaign_id"]) == ("r-1", "t-1", "c-1")
    assert ours["message_id"] == "m-1" and "x" not in ours  # only the context fields
    stamp = datetime.fromisoformat(ours["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert library["logger"] == "django.request" and library["level"] == "warning"
    assert library["event"] == "Not Found: /nowhere" and library["request_id"] == "r-1"
    assert failed["level"] == "error"
    assert isinstance(failed["exception"], str)
    assert "ZeroDivisionError: division by zero" in failed["exception"]
    assert native["event"] == "native" and native["batch"] == 2
    assert native["logger"] == "campaigns.example" and native["request_id"] == "r-1"


def test_console_lines_are_for_people():
    lines = run_script("console").splitlines()

    first = lines[0]
    assert "\x1b[" not in "".join(lines)  # no colours when not written to a terminal
    with pytest.raises(ValueError):
        json.loads(first)
    assert "sent 3" in first and "info" in first and "messaging.example" in first
    assert "request_id=r-1" in first and "message_id=m-1" in first
    assert any("ZeroDivisionError: division by zero" in line for line in lines)


def test_an_unknown_log_format_is_refused():
    env = {**os.environ, "LOG_FORMAT": "xml"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "LOG_FORMAT must be one of json, console" in done.stderr


# --- Request ids ---------------------------------------------------------------------------


def test_a_valid_request_id_is_kept_and_echoed(client, log_lines):
    response = client.get("/api/v1/no-such-thing", HTTP_X_REQUEST_ID="edge-7f3a/1")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "edge-7f3a/1"
    # Django's line about the 404, written after the middleware returned, names the request.
    [line] = [line for line in log_lines() if line["logger"] == "django.request"]
    assert line["request_id"] == "edge-7f3a/1"
    assert structlog.contextvars.get_contextvars() == {}  # cleared once the response closed


def test_a_request_without_an_id_gets_a_new_one(client):
    first = client.get("/admin/login/")["X-Request-ID"]
    second = client.get("/admin/login/")["X-Request-ID"]

    assert len(first) == 32 and int(first, 16) >= 0
    assert first != second


@pytest.mark.parametrize(
    "bad",
    ["x" * 201, "has\ta tab", "new\x01line", "caf\u00e9", ""],
    ids=["too-long", "tab", "control", "not-ascii", "empty"],
)
def test_a_bad_request_id_is_replaced(client, bad):
    response = client.get("/admin/login/", HTTP_X_REQUEST_ID=bad)

    echoed = response["X-Request-ID"]
    assert echoed != bad and len(echoed) == 32 and int(echoed, 16) >= 0


def test_request_id_rules():
    assert request_id_from("a" * 200) == "a" * 200
    assert request_id_from("a b-c_d:e") == "a b-c_d:e"
    assert request_id_from(None) != request_id_from(None)


# --- Into the tasks ------------------------------------------------------------------------

TEST_QUEUE = "logs-test"


@pytest.fixture
def published():
    """The headers of the tasks published during the test (to a queue of its own, emptied)."""
    seen: list[dict] = []

    def receiver(headers=None, **_signal):
        seen.append(dict(headers))

    before_task_publish.connect(receiver)
    yield seen
    before_task_publish.disconnect(receiver)
    with Connection(current_app.conf.broker_url) as connection:
        connection.SimpleQueue(TEST_QUEUE).clear()


def test_a_task_published_while_a_request_is_served_carries_its_id(published):
    seen = published
    structlog.contextvars.bind_contextvars(request_id="req-42")

    dispatch.publish("messaging.sweep_pending", args=[], queue=TEST_QUEUE)
    structlog.contextvars.clear_contextvars()
    dispatch.publish("messaging.sweep_pending", args=[], queue=TEST_QUEUE)

    assert seen[0]["request_id"] == "req-42"
    assert "request_id" not in seen[1]
    with Connection(current_app.conf.broker_url) as connection:
        queue = connection.SimpleQueue(TEST_QUEUE)
        message = queue.get(timeout=5)
        assert message.headers["request_id"] == "req-42"  # it travelled through the broker
        message.ack()


# --- Quiet periodic tasks ------------------------------------------------------------------


def test_celery_lines_about_periodic_tasks_are_debug_lines(log_lines):
    trace = logging.getLogger("celery.app.trace")
    beat = logging.getLogger("celery.beat")
    success = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"

    def succeeded(name: str) -> None:
        trace.info(success, {"name": name, "id": "1", "runtime": 0.1, "return_value": 0})

    succeeded("messaging.sweep_pending")
    beat.info("Scheduler: Sending due task %s (%s)", "sweep-pending-messages",
              "messaging.sweep_pending")  # fmt: skip
    succeeded("messaging.deliver_batch")
    beat.info("Scheduler: Sending due task %s (%s)", "campaign-9", "campaigns.start_scheduled_run")

    events = [(line["level"], line["event"]) for line in log_lines()]
    assert events == [
        ("info", "Task messaging.deliver_batch[1] succeeded in 0.1s: 0"),
        ("info", "Scheduler: Sending due task campaign-9 (campaigns.start_scheduled_run)"),
    ]
    trace.setLevel(logging.DEBUG)
    try:
        succeeded("messaging.sweep_pending")
    finally:
        trace.setLevel(logging.NOTSET)
    assert log_lines()[-1]["level"] == "debug"
