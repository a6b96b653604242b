"""The readiness checks of /readyz: database, redis, broker, workers.

django-health-check's check classes do the database (SELECT 1 on the request's connection)
and Redis (PING) checks; the broker check is its Redis check on a Redis broker, and on
RabbitMQ an AMQP connection opened and closed with kombu (django-health-check's RabbitMQ
check needs aio-pika, which the project does not otherwise use). Workers: at least one
worker process's heartbeat is fresh (operations.probes.workers_online). The checks run
concurrently, each bounded by CHECK_TIMEOUT; their plugin views render HTML or their own
JSON, so /readyz renders the contract's shape itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging

from django.conf import settings
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.contrib.redis import Redis
from health_check.exceptions import ServiceUnavailable

from . import probes

CHECK_TIMEOUT = datetime.timedelta(seconds=2)
# django-health-check logs every failed check with its traceback at WARNING; /readyz's
# answer carries the reason, and a probe every few seconds would fill the logs with them.
logging.getLogger("health_check").setLevel(logging.ERROR)
OK = "ok"


def _redis_factory(url: str):
    def factory():
        from redis.asyncio import Redis as AsyncRedis

        seconds = CHECK_TIMEOUT.total_seconds()
        return AsyncRedis.from_url(url, socket_timeout=seconds, socket_connect_timeout=seconds)

    return factory


@dataclasses.dataclass
class AmqpBroker(HealthCheck):
    """Opens and closes a connection to a RabbitMQ broker."""

    url: str = dataclasses.field(repr=False)
    timeout: datetime.timedelta = dataclasses.field(default=CHECK_TIMEOUT, repr=False)

    def run(self) -> None:
        try:
            probes.amqp_connection(self.timeout.total_seconds(), url=self.url).close()
        except Exception as exc:
            raise ServiceUnavailable(f"Unable to connect to RabbitMQ: {exc}.") from exc


@dataclasses.dataclass
class NoCheck(HealthCheck):
    """A broker that is not a server (the file-system broker of `make run` without Redis)."""

    def run(self) -> None:
        return None


@dataclasses.dataclass
class Workers(HealthCheck):
    """At least one worker process has written its heartbeat within the heartbeat TTL."""

    def run(self) -> None:
        if not probes.workers_online():
            raise ServiceUnavailable(
                "No worker process has reported in the last "
                f"{probes.HEARTBEAT_TTL_SECONDS} seconds."
            )


def _database_check() -> dict[str, str]:
    """Run in the request's thread, on its own connection (the check classes run sync checks
    in an executor thread, which would open and close a connection per call)."""
    try:
        Database().run()
    except ServiceUnavailable as exc:
        return {"database": _sentence("Database unavailable", exc.message)}
    except Exception as exc:
        return {"database": _sentence("Database unavailable", type(exc).__name__)}
    return {"database": OK}


def _period(text: str) -> str:
    text = str(text).strip() or "Unknown error"
    return text if text.endswith(".") else text + "."


def _sentence(prefix: str, text: str) -> str:
    text = str(text).strip() or "unknown error"
    sentence = text if text.lower().startswith(prefix.lower()) else f"{prefix}: {text}"
    return sentence if sentence.endswith(".") else sentence + "."


def other_checks() -> dict[str, HealthCheck]:
    broker = settings.CELERY_BROKER_URL
    kind = probes.broker_kind(broker)
    if kind == "redis":
        broker_check = Redis(client_factory=_redis_factory(broker))
    elif kind == "amqp":
        broker_check = AmqpBroker(url=broker)
    else:
        broker_check = NoCheck()
    return {
        "redis": Redis(client_factory=_redis_factory(settings.REDIS_URL)),
        "broker": broker_check,
        "workers": Workers(),
    }


async def _gather(checks: dict[str, HealthCheck]) -> dict[str, str]:
    results = await asyncio.gather(*(check.get_result() for check in checks.values()))
    return {
        name: OK if result.error is None else _period(result.error.message)
        for name, result in zip(checks, results, strict=True)
    }


def readiness() -> dict[str, str]:
    """{"database", "redis", "broker", "workers"} -> "ok" or an error sentence."""
    checks = _database_check()
    checks |= asyncio.run(_gather(other_checks()))
    return {name: checks[name] for name in ("database", "redis", "broker", "workers")}
