"""The logs of real processes: with LOG_FORMAT=json the web app's, the worker's and beat's
lines are JSON objects, a request's id follows it into the worker's lines for its task, and
an idle stack on a fresh broker writes nothing about its periodic sweeps."""

from __future__ import annotations

import json
import time

import pytest

from bench.servers import free_port
from messaging.models import Message, SweepMark
from messaging.services.subscriptions import SYSTEM, subscription_register

from .conftest import broker_env, private_broker, wait_for
from .processes import Process, request, stack_processes, start, start_web

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(e2e, worker_env, tmp_path):
    """Web, worker and beat writing JSON lines, on a broker of their own that nothing used
    before (the suite's worker must not take their tasks). The sweep runs every second."""
    with private_broker() as broker:
        port = free_port()
        env = {
            **worker_env,
            **broker_env(broker),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "MESSAGE_SWEEP_INTERVAL_SECONDS": "1",
        }
        # The worker as `make run` starts it: `-l info` is Celery's, the lines' level is LOG_LEVEL.
        processes = stack_processes(
            env, tmp_path, port=port, name="logs", threads=2, web_args=("--access-logfile", "-")
        )
        yield processes
        for process in processes.values():
            process.stop()


def json_lines(process: Process) -> list[dict]:
    """The process's log lines that are JSON objects (Celery also prints its banner)."""
    found = []
    for line in process.text().splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_a_request_id_follows_the_request_into_the_worker_and_every_line_is_json(live_app, stack):
    start_web(stack["web"])
    start(stack["worker"], "ready.")
    start(stack["beat"], "beat: Starting")
    [subscription, _] = subscription_register(
        application=live_app, actor=SYSTEM, type="iOSPush", token=f"abcd{0:060x}"
    )
    status, headers, body = request(
        stack["web"], live_app.server_key, "POST", "/api/v1/messages",
        {"subscription_ids": [str(subscription.pk)], "title": "t", "body": "b"},
        headers={"X-Request-ID": "req-logs-e2e-1"},
    )  # fmt: skip
    assert status == 202, body
    assert headers["X-Request-ID"] == "req-logs-e2e-1"
    [message_id] = [m["id"] for m in body["messages"]]
    wait_for(
        lambda: Message.objects.filter(pk=message_id, status="successful").exists(),
        timeout=30, what="the message to be sent",
    )  # fmt: skip

    def task_line():
        return next(
            (line for line in json_lines(stack["worker"])
             if line.get("request_id") == "req-logs-e2e-1" and "succeeded" in line["event"]),
            None,
        )  # fmt: skip

    line = wait_for(task_line, timeout=10, what="the worker's line for the request's task")
    assert line["logger"] == "celery.app.trace" and line["level"] == "info"
    assert "messaging.deliver_batch" in line["event"]
    assert line["task_id"] in line["event"]
    assert line["message_id"] == message_id  # a batch of one names its message
    assert line["timestamp"].endswith("Z")

    # Every line of gunicorn's (its own and the access log) is JSON, and names the request.
    web_text = stack["web"].text().strip().splitlines()
    web = [json.loads(line) for line in web_text]
    assert {"gunicorn.error", "gunicorn.access"} <= {line["logger"] for line in web}
    [access] = [line for line in web if line["logger"] == "gunicorn.access"]
    assert access["request_id"] == "req-logs-e2e-1" and "POST /api/v1/messages" in access["event"]
    # The worker's and beat's own lines are JSON too: Celery left the root logger alone.
    for name, ready in (("worker", "ready."), ("beat", "beat: Starting...")):
        lines = json_lines(stack[name])
        assert any(line["event"].endswith(ready) for line in lines), stack[name].text()[-3000:]
        assert all({"timestamp", "level", "event", "logger"} <= set(line) for line in lines)
        assert "INFO/MainProcess" not in stack[name].text()  # Celery's own format


def test_an_idle_stack_on_a_fresh_broker_writes_nothing_about_its_sweeps(live_app, stack):
    start(stack["worker"], "ready.")
    start(stack["beat"], "beat: Starting")
    sweeps: set = set()

    def three_sweeps() -> bool:
        # Each sweep moves its "due" mark to its own start (and writes no line).
        sweeps.update(SweepMark.objects.filter(name="due").values_list("position", flat=True))
        return len(sweeps) >= 3

    wait_for(three_sweeps, timeout=30, what="three sweeps")
    time.sleep(0.5)
    for name in ("worker", "beat"):
        events = [line["event"] for line in json_lines(stack[name])]
        assert not [event for event in events if "sweep" in event], events
        assert not [event for event in events if "broker lost" in event], events
