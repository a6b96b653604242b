"""A NAIVE delivery design, written only as the benchmark's baseline: one Celery task per
message, one row written per status change. Never used by the application.

The bench workers load it with `celery worker --include bench.naive`; it also tells the bench
when a worker is ready (a file in $BENCH_READY_DIR), so the workers can log at WARNING.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import shared_task
from celery.signals import task_postrun, worker_process_init, worker_ready

FANOUT_TASK = "bench.naive_fanout"
SEND_TASK = "bench.naive_send"


@worker_ready.connect
def _announce_ready(**kwargs) -> None:
    ready_dir = os.environ.get("BENCH_READY_DIR")
    if ready_dir:
        (Path(ready_dir) / f"{os.getpid()}.ready").write_text("ready")


# --- Statements per message (the campaign bench's breakdown) -------------------------------
# In the bench's workers only: every statement a pool process sends PostgreSQL (execute,
# executemany, COPY) is counted, and after each task the process's total is written to
# $BENCH_READY_DIR/../statements/<pid>, which the bench sums before and after a run.
_statements = [0]


def _counting(method):
    def counted(self, *args, **kwargs):
        _statements[0] += 1
        return method(self, *args, **kwargs)

    return counted


@worker_process_init.connect
def _count_statements(**kwargs) -> None:
    import psycopg

    for name in ("execute", "executemany", "copy"):
        setattr(psycopg.Cursor, name, _counting(getattr(psycopg.Cursor, name)))


@task_postrun.connect
def _write_statements(**kwargs) -> None:
    ready_dir = os.environ.get("BENCH_READY_DIR")
    if ready_dir:
        folder = Path(ready_dir).parent / "statements"
        folder.mkdir(exist_ok=True)
        (folder / str(os.getpid())).write_text(str(_statements[0]))


@shared_task(name=FANOUT_TASK)
def naive_fanout(application_id: str, campaign_id: str, tags: dict, title: str, body: str) -> int:
    """One message row at a time, each committed alone, and one send task per message."""
    from messaging.models import Message, Subscription

    audience = Subscription.objects.filter(
        application_id=application_id, enabled=True, tags__contains=tags
    ).only("id", "type")
    count = 0
    for subscription in audience.iterator(chunk_size=2000):
        message = Message.objects.create(
            application_id=application_id,
            subscription_id=subscription.pk,
            channel=subscription.type,
            campaign_id=campaign_id,
            title=title,
            body=body,
        )
        naive_send.apply_async(args=[str(message.pk)], queue="messages")
        count += 1
    return count


@shared_task(name=SEND_TASK)
def naive_send(message_id: str) -> str:
    """Loads one message, sends it alone, saves its status and each event row by row."""
    from django.utils import timezone

    from accounts.selectors import channel_credentials_get
    from adapters import registry
    from adapters.base import Credentials, OutboundMessage
    from messaging.models import Message, MessageEvent

    message = Message.objects.select_related("subscription", "application").get(pk=message_id)
    application = message.application
    values = channel_credentials_get(application=application, channel=message.channel)
    credentials = Credentials(key=f"naive:{application.pk}:{message.channel}", values=values)
    outbound = OutboundMessage(
        message_id=str(message.pk),
        token=message.subscription.token,
        title=message.title,
        body=message.body,
        data=message.data,
    )
    [result] = registry.get_adapter(message.channel).send_batch(credentials, [outbound])
    now = timezone.now()
    message.attempts += 1
    MessageEvent.objects.create(
        message=message,
        type=MessageEvent.Type.ATTEMPT,
        at=now,
        details={"ok": result.ok, "status_code": result.status_code},
    )
    if result.ok:
        message.succeed()
        message.sent_at = now
        message.provider_id = result.provider_id or ""
    else:
        message.fail()
        message.error_code = result.error_code or "error"
    message.save()
    MessageEvent.objects.create(
        message=message, type=MessageEvent.Type.STATUS, status=message.status, at=now
    )
    return message.status
