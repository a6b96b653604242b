"""The outbox of messaging.dispatch: at most one flush per interval, so ids from many sends
within it leave as one task; after a quiet interval the first ids leave at once; full
batches leave at once. Read from the real Redis broker, on queues no worker listens to."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import redis
import structlog
from django.conf import settings as django_settings

from messaging import dispatch
from messaging.dispatch import outbox


@pytest.fixture
def broker():
    return redis.Redis.from_url(django_settings.REDIS_URL)


@pytest.fixture
def queue(broker):
    name = f"outbox-test-{uuid.uuid4()}"
    yield name
    broker.delete(name, *broker.keys(f"*{name}*"))


def tasks_on(broker, queue: str) -> list[tuple[str, list[str], float | None]]:
    """(task name, ids, countdown eta) of every task waiting on the queue, oldest first."""
    tasks = []
    for raw in reversed(broker.lrange(queue, 0, -1)):  # kombu LPUSHes: newest first
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _embed = json.loads(body)
        assert kwargs == {}
        [ids] = args
        tasks.append((envelope["headers"]["task"], ids, envelope["headers"].get("eta")))
    return tasks


def request_ids_on(broker, queue: str) -> list[str | None]:
    """The `request_id` header of every task waiting on the queue, oldest first."""
    return [
        json.loads(raw)["headers"].get("request_id")
        for raw in reversed(broker.lrange(queue, 0, -1))
    ]


def wait_past_the_flush(settings) -> None:
    time.sleep(settings.MESSAGE_OUTBOX_FLUSH_MS / 1000 + 0.3)


@pytest.fixture
def just_flushed():
    """As under load: the outbox flushed a moment ago, so the next flush waits."""
    outbox.last_flush = time.monotonic()


def test_single_adds_within_the_interval_leave_as_one_task(broker, queue, settings, just_flushed):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 50
    ids = [str(uuid.uuid4()) for _ in range(20)]

    for message_id in ids:
        outbox.add(queue, [message_id])
    wait_past_the_flush(settings)

    assert broker.llen(queue) == 1
    assert tasks_on(broker, queue) == [("messaging.deliver_batch", ids, None)]


def test_nothing_leaves_within_the_interval_after_a_flush(broker, queue, settings, just_flushed):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 400
    outbox.add(queue, [str(uuid.uuid4())])
    time.sleep(0.1)
    assert broker.llen(queue) == 0
    wait_past_the_flush(settings)
    assert broker.llen(queue) == 1


def test_after_a_quiet_interval_the_first_ids_leave_at_once(broker, queue, settings):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 400
    outbox.last_flush = time.monotonic() - 1.0  # quiet for longer than the interval
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    outbox.add(queue, [first])
    time.sleep(0.1)
    assert [task[1] for task in tasks_on(broker, queue)] == [[first]]

    outbox.add(queue, [second])  # within the interval of that flush: it waits
    time.sleep(0.1)
    assert broker.llen(queue) == 1
    wait_past_the_flush(settings)
    assert [task[1] for task in tasks_on(broker, queue)] == [[first], [second]]


def test_a_full_batch_leaves_at_once(broker, queue, settings, just_flushed):
    settings.MESSAGE_BATCH_SIZE = 5
    settings.MESSAGE_OUTBOX_FLUSH_MS = 400
    ids = [str(uuid.uuid4()) for _ in range(7)]

    outbox.add(queue, ids)

    assert tasks_on(broker, queue) == [("messaging.deliver_batch", ids[:5], None)]
    wait_past_the_flush(settings)
    assert [task[1] for task in tasks_on(broker, queue)] == [ids[:5], ids[5:]]


def test_a_flush_splits_into_batches(broker, queue, settings, just_flushed):
    settings.MESSAGE_BATCH_SIZE = 5
    settings.MESSAGE_OUTBOX_FLUSH_MS = 50
    ids = [str(uuid.uuid4()) for _ in range(12)]

    for message_id in ids:
        outbox.add(queue, [message_id])
    wait_past_the_flush(settings)

    assert [task[1] for task in tasks_on(broker, queue)] == [ids[:5], ids[5:10], ids[10:]]


def test_with_no_flush_interval_everything_leaves_at_once(broker, queue, settings):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 0
    settings.MESSAGE_BATCH_SIZE = 5
    ids = [str(uuid.uuid4()) for _ in range(7)]

    outbox.add(queue, ids[:1])
    assert [task[1] for task in tasks_on(broker, queue)] == [ids[:1]]
    outbox.add(queue, ids[1:])
    assert [task[1] for task in tasks_on(broker, queue)] == [ids[:1], ids[1:6], ids[6:]]


def test_each_queue_gets_its_own_tasks(broker, queue, settings, just_flushed):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 50
    other = f"{queue}-other"
    try:
        outbox.add(queue, ["a"])
        outbox.add(other, ["b"])
        outbox.add(queue, ["c"])
        wait_past_the_flush(settings)

        assert [task[1] for task in tasks_on(broker, queue)] == [["a", "c"]]
        assert [task[1] for task in tasks_on(broker, other)] == [["b"]]
    finally:
        broker.delete(other, *broker.keys(f"*{other}*"))


def test_a_task_names_the_requests_whose_ids_it_carries(broker, queue, settings, just_flushed):
    """The outbox publishes from its own thread: it keeps each addition's request id for
    the task that carries its ids."""
    settings.MESSAGE_OUTBOX_FLUSH_MS = 50
    settings.MESSAGE_BATCH_SIZE = 3
    for request_id, ids in (("req-a", ["1", "2"]), ("req-b", ["3", "4"]), (None, ["5"])):
        structlog.contextvars.bind_contextvars(request_id=request_id)
        outbox.add(queue, ids)
    structlog.contextvars.clear_contextvars()
    wait_past_the_flush(settings)

    assert [task[1] for task in tasks_on(broker, queue)] == [["1", "2", "3"], ["4", "5"]]
    assert request_ids_on(broker, queue) == ["req-a,req-b", "req-b"]


def test_a_task_names_at_most_twenty_requests(broker, queue, settings, just_flushed):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 50
    for i in range(25):
        structlog.contextvars.bind_contextvars(request_id=f"r{i}")
        outbox.add(queue, [str(i)])
    structlog.contextvars.clear_contextvars()
    wait_past_the_flush(settings)

    [names] = request_ids_on(broker, queue)
    assert names.split(",") == [f"r{i}" for i in range(dispatch.MAX_REQUEST_IDS)]


def test_a_delayed_enqueue_skips_the_outbox_and_carries_its_countdown(broker, queue, settings):
    settings.MESSAGE_BATCH_SIZE = 2
    settings.MESSAGE_OUTBOX_FLUSH_MS = 400

    dispatch.enqueue(queue, ["a", "b", "c"], countdown=30)

    tasks = tasks_on(broker, queue)
    assert [task[1] for task in tasks] == [["a", "b"], ["c"]]
    assert all(task[2] is not None for task in tasks)  # an eta: delivered later


@pytest.fixture
def broker_refuses(monkeypatch, queue):
    """The broker refuses what is published to `queue` (as while it restarts) until the
    returned switch is cleared; everything else reaches the real broker."""
    real_apply = dispatch._apply
    refusing = {"on": True}

    def apply(task, args, name, countdown, request_id=None):
        if refusing["on"] and name == queue:
            raise ConnectionError("broker down")
        real_apply(task, args, name, countdown, request_id)

    monkeypatch.setattr(dispatch, "_apply", apply)
    yield refusing
    outbox._deferred.clear()


def test_a_refused_publish_is_kept_and_sent_once_the_broker_takes_it(
    broker, queue, settings, just_flushed, broker_refuses
):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 50
    other = f"{queue}-other"
    try:
        structlog.contextvars.bind_contextvars(request_id="req-kept")
        outbox.add(queue, ["kept"])
        structlog.contextvars.clear_contextvars()
        outbox.add(other, ["sent"])
        wait_past_the_flush(settings)
        assert [task[1] for task in tasks_on(broker, other)] == [["sent"]]
        assert broker.llen(queue) == 0 and outbox.deferred == 1

        broker_refuses["on"] = False
        time.sleep(dispatch.DEFER_RETRY_SECONDS + 0.5)

        assert [task[1] for task in tasks_on(broker, queue)] == [["kept"]]
        assert request_ids_on(broker, queue) == ["req-kept"]  # still its request's
        assert outbox.deferred == 0
    finally:
        broker.delete(other, *broker.keys(f"*{other}*"))


def test_a_refused_delayed_publish_keeps_its_time(broker, queue, settings, broker_refuses):
    settings.MESSAGE_BATCH_SIZE = 10
    dispatch.enqueue(queue, ["later"], countdown=30)  # a retry's back-off
    assert outbox.deferred == 1
    time.sleep(1.2)
    broker_refuses["on"] = False
    outbox.retry_deferred()

    [(name, ids, eta)] = tasks_on(broker, queue)
    assert ids == ["later"] and eta is not None
    # Counted from the first attempt: about 29 s left, not a new 30 s.
    from datetime import datetime

    left = datetime.fromisoformat(eta) - datetime.now(datetime.fromisoformat(eta).tzinfo)
    assert 25 < left.total_seconds() < 29.5


def test_a_publish_the_broker_never_takes_is_given_up_after_its_time(
    broker, queue, settings, broker_refuses
):
    settings.MESSAGE_PUBLISH_DEFER_SECONDS = 0
    dispatch.enqueue(queue, ["gone"], countdown=5)
    time.sleep(0.05)
    assert outbox.retry_deferred() == 0  # dropped: the sweep enqueues its work
    assert broker.llen(queue) == 0


def test_a_worker_process_publishes_at_once(broker, queue, settings, monkeypatch):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 400
    monkeypatch.setattr(outbox, "immediate", True)

    outbox.add(queue, ["a"])
    outbox.add(queue, ["b"])

    assert [task[1] for task in tasks_on(broker, queue)] == [["a"], ["b"]]
