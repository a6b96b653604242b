"""Test-wide set-up: real PostgreSQL and Redis (and RabbitMQ when it is the broker), or a loud
failure."""

import socket

import pytest


def _answers(url_host: str, port: int) -> bool:
    try:
        with socket.create_connection((url_host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session):
    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    problems = []
    if connection.vendor != "postgresql":
        problems.append(f"the tests need PostgreSQL, DATABASE_URL gives {db['ENGINE']}")
    elif not _answers(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)):
        problems.append(f"PostgreSQL does not answer at {db.get('HOST')}:{db.get('PORT')}")
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis does not answer at {settings.REDIS_URL}: {exc}")
    broker = settings.CELERY_BROKER_URL
    if broker.startswith(("amqp://", "amqps://", "pyamqp://")):
        from kombu import Connection

        try:
            with Connection(broker, connect_timeout=5) as connection:
                connection.ensure_connection(max_retries=1)
        except Exception as exc:
            problems.append(f"RabbitMQ does not answer at {broker}: {exc}")
    if problems:
        pytest.exit("Cannot run the tests: " + "; ".join(problems), returncode=3)


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _clear_log_context():
    """What one test bound for its log lines (a request's id...) is not carried into the next
    test, nor into the tasks it publishes."""
    import structlog

    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
