"""End-to-end fixtures: the fake providers and real Celery worker processes, on the test
database and a Redis database of the tests' own.

The broker is the one the settings name: Redis by default, RabbitMQ when CELERY_BROKER_URL is
an amqp:// URL (`make test` runs this package a second time that way)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from accounts.models import ApiKey
from accounts.services import api_key_create, application_create
from fakes.process import running_fake_providers
from messaging.dispatch import outbox

ROOT = Path(__file__).resolve().parents[2]
QUEUES = "critical,messages,campaigns,retry"


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


@pytest.fixture(scope="session")
def fake_providers():
    with running_fake_providers() as fakes:
        yield fakes


class Worker:
    """One `celery worker` process tree, started and ended by its PID."""

    def __init__(self, env: dict[str, str], log: Path, name: str):
        self.env, self.log, self.name = env, log, name
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        self.log.write_text("")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "signal_project",
                "worker",
                "-Q",
                QUEUES,
                "-c",
                "2",
                "-l",
                "info",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches the children
        )
        wait_for(
            lambda: "ready." in self.log.read_text(errors="replace") or self._died(),
            timeout=60,
            what="the Celery worker to be ready",
        )
        if self._died():
            raise RuntimeError(f"worker exited:\n{self.log.read_text()}")
        return self

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


ON_RABBITMQ = settings.CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))


def private_broker():
    """A broker server of a test's own, of the kind the suite runs on, that it may kill."""
    from bench.servers import PrivateRabbitMQ, PrivateRedis

    return PrivateRabbitMQ() if ON_RABBITMQ else PrivateRedis()


def broker_env(broker) -> dict[str, str]:
    """The environment that points a process at a private broker (on Redis, its cache and
    rate limits go there too; on RabbitMQ they stay in the tests' Redis)."""
    env = {"CELERY_BROKER_URL": broker.url}
    if not ON_RABBITMQ:
        env["REDIS_URL"] = broker.url
    return env


def queued(broker_url: str) -> int:
    """Tasks waiting in the four queues of the broker at `broker_url`."""
    from kombu import Connection

    total = 0
    with Connection(broker_url) as connection:
        for queue in QUEUES.split(","):
            channel = connection.channel()
            try:
                total += channel.queue_declare(queue, passive=True).message_count
            except connection.channel_errors:
                pass  # not declared (yet, or any more): nothing in it
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
    return total


def empty_broker() -> None:
    """Drops every task waiting in the four queues (and, on Redis, the tests' whole database:
    its unacknowledged set and the cache of the same database)."""
    if not ON_RABBITMQ:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        return
    from celery import current_app

    with current_app.connection_for_write() as broker:
        for queue in QUEUES.split(","):
            channel = broker.channel()
            try:
                channel.queue_purge(queue)
            except broker.channel_errors:
                pass  # not declared yet: nothing in it
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


@pytest.fixture(scope="session")
def worker_env(django_db_setup, fake_providers, live_server, tmp_path_factory) -> dict[str, str]:
    db = settings.DATABASES["default"]
    empty_broker()  # no tasks left from an earlier run
    return {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "RABBITMQ_QUEUE_TYPE": settings.RABBITMQ_QUEUE_TYPE,
        "APNS_ENDPOINT": fake_providers.apns_endpoint,
        "APNS_CA_FILE": fake_providers.ca_file,
        "FCM_ENDPOINT": fake_providers.fcm_endpoint,
        "SMS_ENDPOINT": fake_providers.sms_endpoint,
        "KAKAO_ENDPOINT": fake_providers.kakao_endpoint,
        "SMTP_CA_FILE": fake_providers.ca_file,
        "WEB_PUSH_ALLOWED_HOSTS": ",".join(settings.WEB_PUSH_ALLOWED_HOSTS),
        # Links the workers hand out (SMS status callbacks, unsubscribe) lead to this test
        # session's live server, where the fakes' callbacks arrive.
        "PUBLIC_URL": live_server.url,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "TOKEN_HMAC_KEY": settings.TOKEN_HMAC_KEY,
        "MESSAGE_RETRY_BASE_SECONDS": "0.2",
        "MESSAGE_STALE_AFTER_SECONDS": "2",
        "CAMPAIGN_BATCH_SIZE": "200",
        # Small delivery batches: some of a campaign's work waits in the queue (not yet
        # claimed) while the rest is in flight, as in a large campaign.
        "MESSAGE_BATCH_SIZE": "20",
        "CAMPAIGN_STALL_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }


# Package scope: the worker ends with the last e2e test. A worker left running would take
# the tasks that later (non-e2e) tests enqueue and hold row locks while pytest-django
# truncates the tables under it (a deadlock that failed a CI run).
@pytest.fixture(scope="package")
def celery_worker(worker_env, tmp_path_factory):
    worker = Worker(worker_env, tmp_path_factory.mktemp("worker") / "worker.log", "e2e")
    worker.start()
    yield worker
    worker.stop()


def _other_sessions_busy() -> int:
    """Sessions on the test database, other than ours, that are running a statement or hold
    a transaction open (and so may hold locks that TRUNCATE needs)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND state <> 'idle'"
        )
        return cursor.fetchone()[0]


def quiesce(timeout: float = 20.0) -> None:
    """Lets the worker finish what a test left: nothing more is queued, and no session of
    the worker is inside a transaction, twice in a row 0.2 s apart."""
    outbox.flush()
    empty_broker()
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker was still busy {timeout} s after the test")
        quiet = quiet + 1 if _other_sessions_busy() == 0 else 0
        time.sleep(0.2)


@pytest.fixture
def e2e(transactional_db, celery_worker, fake_providers, settings):
    """A clean database the worker sees (every write commits) and the fakes' counters at 0.
    Afterwards the worker is left with nothing to do before the tables are truncated."""
    settings.MESSAGE_STALE_AFTER_SECONDS = 2
    settings.CAMPAIGN_BATCH_SIZE = 200
    settings.MESSAGE_BATCH_SIZE = 20
    settings.CAMPAIGN_STALL_SECONDS = 2
    fake_providers.reset()
    yield fake_providers
    quiesce()


@pytest.fixture
def live_app(e2e):
    """An application whose credentials are the fake providers', with a server key and a
    client key (raw values on .server_key / .client_key)."""
    application = application_create(
        name="e2e",
        credentials={
            "iOSPush": dict(e2e.apns_credentials().values),
            "AndroidPush": dict(e2e.fcm_credentials().values),
        },
    )
    application.server_key = api_key_create(application=application, scope=ApiKey.Scope.SERVER).raw
    application.client_key = api_key_create(application=application, scope=ApiKey.Scope.CLIENT).raw
    return application
