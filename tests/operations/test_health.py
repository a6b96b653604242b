"""/healthz and /readyz: no API key, the contract's shape, 503 with a sentence per failure."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.operations.conftest import heartbeat

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_state")]


def test_healthz_answers_without_a_key_and_checks_nothing(settings, closed_port):
    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port}/0"

    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_with_every_dependency_and_a_worker():
    heartbeat()

    response = Client().get("/readyz")

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "broker": "ok", "workers": "ok"},
    }


def test_readyz_is_503_without_a_worker():
    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] != "ok"
    checks = body["checks"]
    assert (checks["database"], checks["redis"], checks["broker"]) == ("ok", "ok", "ok")
    assert checks["workers"].startswith("No worker process has reported")
    assert checks["workers"].endswith(".")


def test_readyz_is_503_when_redis_and_the_broker_do_not_answer(settings, closed_port):
    heartbeat()  # written while Redis answered; unreadable below
    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port}/0"

    response = Client().get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    for name in ("redis", "broker"):
        assert "Unable to connect to Redis" in checks[name], checks
    assert checks["workers"] != "ok"


def test_readyz_is_503_when_a_rabbitmq_broker_does_not_answer(settings, closed_port):
    heartbeat()
    settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{closed_port}/ops"

    response = Client().get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"].startswith("Unable to connect to RabbitMQ")
    assert (checks["database"], checks["redis"], checks["workers"]) == ("ok", "ok", "ok")


def test_an_expired_heartbeat_is_not_a_worker():
    from operations import probes

    heartbeat()
    state = probes.state_redis()
    state.delete(probes.HEARTBEAT_PREFIX + "test-host:4242")  # its TTL ran out

    assert probes.workers_online() == []
    assert Client().get("/readyz").json()["checks"]["workers"] != "ok"
