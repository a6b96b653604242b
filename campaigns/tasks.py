"""Celery tasks of campaigns: thin interfaces over the services."""

from __future__ import annotations

import logging

import structlog
from celery import shared_task
from django.db import DatabaseError

from accounts.audit import SYSTEM
from core.exceptions import InvalidTransition

from . import services
from .models import Campaign

logger = logging.getLogger(__name__)


@shared_task(
    name="campaigns.fanout",
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=10,
    # One step inserts one batch (CAMPAIGN_BATCH_SIZE messages): seconds at most.
    soft_time_limit=60,
    time_limit=90,
)
def campaign_fanout(run_id: str, step: int | None = None) -> bool:
    """One fan-out step of a run; it enqueues the next one itself."""
    return services.run_fanout_step(run_id=run_id, step=step)


@shared_task(name="campaigns.start_scheduled_run")
def start_scheduled_run(campaign_id: str, trigger: str) -> str | None:
    """Started by beat at a campaign's scheduled time or crontab."""
    structlog.contextvars.bind_contextvars(campaign_id=campaign_id)
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return None
    try:
        run = services.campaign_execute(campaign=campaign, actor=SYSTEM, trigger=trigger)
    except InvalidTransition:
        # Cancelled, or its previous run is still going: this occurrence is skipped.
        logger.warning("Campaign %s is %s: scheduled run skipped", campaign_id, campaign.status)
        return None
    return str(run.pk)


@shared_task(name="campaigns.cancel_run_messages")
def campaign_run_cancel_messages(run_id: str, actor: str, attempt: int = 0) -> int:
    return services.run_cancel_messages(run_id=run_id, actor=actor, attempt=attempt)


@shared_task(name="campaigns.resume_stalled_runs")
def resume_stalled_runs() -> int:
    return services.runs_resume_stalled()
