"""Celery tasks of messaging: thin interfaces that take ids and call the pipeline."""

from __future__ import annotations

import re

import structlog
from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from accounts.models import Application
from templates_app.kakao import kakao_applications

from . import delivery, dispatch, retention
from .delivery import rollups
from .services import erasure, fallback
from .services.reports import kakao_results_poll

# A batch's transaction stays open while it sends: the adapters give a batch at most
# `send_rounds x timeout + 30 s` (APNs 50 s, FCM 70 s with its OAuth token fetches, e-mail
# 110 s, SMS and Web Push 100 s). The
# soft limit lies beyond that, the hard one beyond the soft one, and PostgreSQL's
# DB_IDLE_IN_TRANSACTION_TIMEOUT (300 s) beyond both.
DELIVER_SOFT_TIME_LIMIT = 120
DELIVER_TIME_LIMIT = 150

# On RabbitMQ quorum queues a countdown task travels through Celery's native delayed delivery,
# and arrives with the delay in front of its queue's routing key as 28 bits
# ("0.0. ... .1.retry"); the queue is what follows them.
_DELAY_PREFIX = re.compile(r"^(?:[01]\.){28}")


def _delivered_from(request) -> str | None:
    routing_key = (request.delivery_info or {}).get("routing_key")
    return _DELAY_PREFIX.sub("", routing_key, count=1) if routing_key else routing_key


@shared_task(
    bind=True,
    name="messaging.deliver_batch",
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=DELIVER_SOFT_TIME_LIMIT,
    time_limit=DELIVER_TIME_LIMIT,
)
def deliver_batch(self, message_ids: list[str]) -> None:
    """Sends the pending messages among these ids (a batch of up to MESSAGE_BATCH_SIZE)."""
    if len(message_ids) == 1:  # a batch's lines name no message of their own
        structlog.contextvars.bind_contextvars(message_id=message_ids[0])
    delivery.deliver_batch(message_ids, queue=_delivered_from(self.request))


@shared_task(name="messaging.sweep_pending")
def sweep_pending() -> int:
    """Re-enqueues pending messages whose work was lost, and scheduled ones now due."""
    return delivery.pending_sweep()


@shared_task(name="messaging.purge_idempotency_records")
def purge_idempotency_records() -> int:
    from datetime import timedelta

    from django.utils import timezone

    from core.models import IdempotencyRecord

    deleted, _ = IdempotencyRecord.objects.filter(
        created_at__lt=timezone.now() - timedelta(hours=24)
    ).delete()
    return deleted


@shared_task(name="messaging.purge_rollups")
def purge_rollups() -> int:
    """Beat, daily: drops the console's per-minute rollups older than ROLLUP_RETENTION_DAYS."""
    return rollups.purge(now=timezone.now(), days=settings.ROLLUP_RETENTION_DAYS)


@shared_task(name="messaging.poll_kakao_results")
def poll_kakao_results(application_id: str | None = None) -> dict:
    """Beat, every minute: hands each application with KakaoTalk credentials its own poll of
    the dealer's results (one slow dealer answer holds up no other application's)."""
    if application_id is None:
        for application in kakao_applications():
            dispatch.publish(
                "messaging.poll_kakao_results",
                args=[str(application.pk)],
                queue="critical",
            )
        return {}
    application = Application.objects.filter(pk=application_id).first()
    if application is None:
        return {}
    return dict(kakao_results_poll(application=application))


@shared_task(name="messaging.fallback_advance", soft_time_limit=60, time_limit=90)
def fallback_advance() -> dict:
    """Beat (FALLBACK_INTERVAL_SECONDS): moves the fallback chains that are due: the next
    channel for a hop that failed or went unreceived, the end for one received."""
    return dict(fallback.fallback_advance())


@shared_task(name="messaging.erase_leftovers")
def erase_leftovers(subscription_ids: list[str]) -> dict:
    """A few minutes after a user's erasure: deletes the messages a campaign fan-out step
    inserted for its subscriptions after the erasure (services.erasure)."""
    found = erasure.erase_leftovers(subscription_ids=subscription_ids)
    if found:
        structlog.get_logger(__name__).info("erase_leftovers", **found)
    return found


@shared_task(name="messaging.purge_expired")
def purge_expired() -> dict:
    """Beat (RETENTION_PURGE_INTERVAL_SECONDS): deletes messages, their events and inbox
    items, and subscription events past their application's retention_days, for at most
    RETENTION_PURGE_BUDGET_SECONDS (kept under the task's soft time limit); the next run
    continues."""
    budget = min(settings.RETENTION_PURGE_BUDGET_SECONDS, settings.CELERY_TASK_SOFT_TIME_LIMIT - 30)
    run = retention.expired_purge(budget_seconds=budget)
    return {
        "messages": sum(p.messages for p in run.purged.values()),
        "finished": run.finished,
        "seconds": run.seconds,
    }
