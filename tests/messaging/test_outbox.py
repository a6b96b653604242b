"""The outbox: at most one flush per interval, so ids from many sends within it leave as one
task; after a quiet interval the first ids leave at once; full batches leave at once. Read
from the real Redis broker, on queues no worker listens to."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings

from messaging import outbox as outbox_module
from messaging.outbox import outbox


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


def test_a_delayed_enqueue_skips_the_outbox_and_carries_its_countdown(broker, queue, settings):
    settings.MESSAGE_BATCH_SIZE = 2
    settings.MESSAGE_OUTBOX_FLUSH_MS = 400

    outbox_module.enqueue(queue, ["a", "b", "c"], countdown=30)

    tasks = tasks_on(broker, queue)
    assert [task[1] for task in tasks] == [["a", "b"], ["c"]]
    assert all(task[2] is not None for task in tasks)  # an eta: delivered later


def test_a_broker_failure_in_a_flush_loses_no_other_queue(
    broker, queue, settings, monkeypatch, just_flushed
):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 50
    real_publish = outbox_module._publish
    broken = f"{queue}-broken"

    def publish(name, ids, countdown=None):
        if name == broken:
            raise ConnectionError("broker down")
        real_publish(name, ids, countdown)

    monkeypatch.setattr(outbox_module, "_publish", publish)
    outbox.add(broken, ["lost-for-now"])
    outbox.add(queue, ["kept"])
    wait_past_the_flush(settings)

    assert [task[1] for task in tasks_on(broker, queue)] == [["kept"]]


def test_a_worker_process_publishes_at_once(broker, queue, settings, monkeypatch):
    settings.MESSAGE_OUTBOX_FLUSH_MS = 400
    monkeypatch.setattr(outbox, "immediate", True)

    outbox.add(queue, ["a"])
    outbox.add(queue, ["b"])

    assert [task[1] for task in tasks_on(broker, queue)] == [["a"], ["b"]]
