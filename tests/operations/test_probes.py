"""operations.probes against real servers: queue depths and the oldest waiting task read from
the Redis broker with no worker consuming, heartbeats of real Celery workers, and answers
within their time bound when nothing listens."""

from __future__ import annotations

import json
import time

import pytest
import redis
from django.conf import settings

from operations import probes
from signal_project.celery import app as celery_app
from tests.e2e.conftest import wait_for
from tests.e2e.processes import Process, celery, start
from tests.operations.conftest import _clear_queues

pytestmark = pytest.mark.usefixtures("clean_state")
on_rabbitmq = pytest.mark.skipif(
    probes.broker_kind(settings.CELERY_BROKER_URL) != "amqp", reason="the broker is not RabbitMQ"
)
on_redis = pytest.mark.skipif(
    probes.broker_kind(settings.CELERY_BROKER_URL) != "redis", reason="the broker is not Redis"
)


def publish(queue: str, n: int, priority: int | None = None) -> None:
    """Tasks nobody consumes (their name is no task of ours): they wait in the broker."""
    for _ in range(n):
        celery_app.send_task("ops_test.nothing", queue=queue, priority=priority)


@on_redis
def test_queue_depths_count_each_queue_including_its_priority_lists():
    publish("critical", 3)
    publish("retry", 2, priority=5)  # kombu keeps it in a priority sub-list of "retry"

    depths = probes.queue_depths()

    assert depths == {"critical": 3, "messages": 0, "campaigns": 0, "retry": 2}
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen("retry") == 0  # the two are elsewhere, and counted


@on_redis
def test_every_task_message_carries_its_publication_time():
    before = time.time()
    publish("messages", 1)

    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL).lindex("messages", -1)

    published_at = json.loads(raw)["headers"][probes.PUBLISHED_AT_HEADER]
    assert before <= published_at <= time.time()


@on_redis
def test_the_oldest_pending_task_is_aged_from_its_publication():
    assert probes.oldest_pending_seconds() == 0.0
    publish("campaigns", 1)
    time.sleep(0.6)
    publish("campaigns", 1)
    publish("critical", 1, priority=9)

    age = probes.oldest_pending_seconds()

    assert 0.6 <= age < 5


@on_rabbitmq
def test_queue_depths_are_read_from_rabbitmq():
    publish("critical", 3)
    publish("retry", 2)

    assert probes.queue_depths() == {"critical": 3, "messages": 0, "campaigns": 0, "retry": 2}


@on_rabbitmq
def test_on_rabbitmq_the_oldest_pending_task_is_bounded_by_the_last_one_started():
    assert probes.oldest_pending_seconds() == 0.0
    publish("campaigns", 1)
    # No worker started a task from the queue yet: counted from when a probe first saw it.
    assert probes.oldest_pending_seconds() < 1
    time.sleep(0.5)
    assert probes.oldest_pending_seconds() >= 0.5
    # What a worker records when it starts a task of the queue (operations.worker).
    probes.state_redis().set(probes.LAST_STARTED_PREFIX + "campaigns", time.time() - 100)
    assert 100 <= probes.oldest_pending_seconds() < 105

    _clear_queues()

    assert probes.oldest_pending_seconds() == 0.0
    assert not probes.state_redis().exists(probes.BACKLOG_SINCE_PREFIX + "campaigns")


def test_probes_answer_their_empty_values_in_time_when_nothing_listens(settings, closed_port):
    for url in (
        f"redis://127.0.0.1:{closed_port}/0",
        f"amqp://guest:guest@127.0.0.1:{closed_port}//",
    ):
        settings.CELERY_BROKER_URL = url
        settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
        for probe, empty in (
            (probes.queue_depths, {}),
            (probes.oldest_pending_seconds, None),
            (probes.workers_online, []),
        ):
            started = time.perf_counter()
            assert probe() == empty, (url, probe)
            assert time.perf_counter() - started < 0.3, (url, probe)


def test_a_silent_host_answers_within_the_time_bound(settings):
    """A non-routable address: connecting hangs, the timeout ends it."""
    settings.CELERY_BROKER_URL = settings.REDIS_URL = "redis://10.255.255.1:6379/0"
    started = time.perf_counter()

    assert probes.queue_depths() == {}
    assert probes.workers_online() == []

    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_each_worker_process_reports_its_heartbeat_until_it_stops(pool, tmp_path):
    # The worker consumes a queue nothing else uses, so no test's tasks are taken by it.
    argv = celery(
        "worker", "-Q", "ops-test", "-P", pool, "-c", "2", "-n", f"ops-{pool}@%h", "-l", "info"
    )
    worker = Process(f"worker-{pool}", argv, _worker_env(), tmp_path)
    try:
        start(worker, "ready.")
        expected = 1 if pool == "solo" else 2
        wait_for(lambda: len(probes.workers_online()) == expected, timeout=20, what="heartbeats")
        online = probes.workers_online()
        assert {w["hostname"].split("@")[0] for w in online} == {f"ops-{pool}"}
        assert all(w["queues"] == ["ops-test"] for w in online)
        assert all(time.time() - w["seen_at"] < probes.HEARTBEAT_TTL_SECONDS for w in online)
        if pool == "solo":
            assert online[0]["pid"] == worker.process.pid
        else:
            assert worker.process.pid not in {w["pid"] for w in online}  # children, not main
    finally:
        worker.stop()
    assert probes.workers_online() == [], worker.text()[-2000:]


def _worker_env() -> dict[str, str]:
    import os

    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
