"""Fixtures of the operations tests: a clean slate of worker heartbeats and queues in this
run's Redis, and the delivery fixtures of the message tests (fake providers)."""

from __future__ import annotations

import socket

import pytest
import redis
from django.conf import settings

from operations import probes
from tests.e2e.conftest import fake_providers  # noqa: F401 (fixtures, re-exported)
from tests.messaging.conftest import fake_app, providers  # noqa: F401


def _clear_operations_keys() -> None:
    state = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(state.scan_iter(match="ops:*"))
    if keys:
        state.delete(*keys)


def _clear_queues() -> None:
    kind = probes.broker_kind(settings.CELERY_BROKER_URL)
    if kind == "redis":
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        keys = [key for queue in probes.queue_names() for key in probes._priority_keys(queue)]
        broker.delete(*keys)
    elif kind == "amqp":
        from amqp.exceptions import NotFound

        with probes.amqp_connection(5.0, url=settings.CELERY_BROKER_URL) as conn:
            for queue in probes.queue_names():
                channel = conn.channel()
                try:
                    channel.queue_purge(queue)
                except NotFound:
                    continue
                channel.close()


@pytest.fixture
def clean_state():
    """No heartbeats, no RabbitMQ bookkeeping and (on Redis) empty queues before and after."""
    _clear_operations_keys()
    _clear_queues()
    yield
    _clear_operations_keys()
    _clear_queues()


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def heartbeat(hostname: str = "test-host", pid: int = 4242) -> None:
    probes.heartbeat_write(hostname=hostname, pid=pid, queues=list(probes.queue_names()))
