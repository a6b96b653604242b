"""Every task has a soft and a hard time limit, and a delivery batch, whose transaction holds its
messages' row locks while it sends, ends before them and before PostgreSQL ends the session."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from adapters import registry
from core import channels
from core.channels import SPECS
from messaging import tasks
from signal_project.celery import app


def our_tasks():
    app.loader.import_default_modules()  # every app's tasks.py, as a worker loads them
    return [task for name, task in sorted(app.tasks.items()) if not name.startswith("celery.")]


def test_every_task_has_a_soft_limit_below_its_hard_limit():
    found = our_tasks()
    assert {"messaging.deliver_batch", "campaigns.fanout", "messaging.sweep_pending"} <= {
        task.name for task in found
    }
    for task in found:
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft and hard and soft < hard, task.name


@pytest.mark.parametrize(
    "channel", [kind for kind, spec in SPECS.items() if spec.delivery == channels.PROVIDER]
)
def test_a_batch_gives_up_on_its_provider_before_the_soft_limit(channel):
    if not registry.adapter_available(channel):
        pytest.skip(f"{channel}'s adapter is not in this release")
    adapter = registry.get_adapter(channel)
    longest_send = adapter.send_rounds * adapter.timeout + 30  # AsyncBatchAdapter.send_batch
    assert longest_send < tasks.DELIVER_SOFT_TIME_LIMIT < tasks.DELIVER_TIME_LIMIT


@pytest.mark.skipif(
    settings.DB_TRANSACTION_POOLER,
    reason="behind a transaction pooler the timeout is the database's or role's own setting",
)
def test_postgresql_ends_an_idle_transaction_only_after_the_hard_limit(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT setting::int FROM pg_settings"
                       " WHERE name = 'idle_in_transaction_session_timeout'")  # fmt: skip
        milliseconds = cursor.fetchone()[0]
    assert milliseconds == settings.DB_IDLE_IN_TRANSACTION_TIMEOUT * 1000
    assert tasks.DELIVER_TIME_LIMIT < settings.DB_IDLE_IN_TRANSACTION_TIMEOUT
