"""Reads of campaigns and their runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, QuerySet, Subquery, Sum
from django.utils import timezone

from accounts.models import Application
from core.exceptions import NotFound
from messaging.models import Message, MessageStatus

from .models import SKIP_FIELDS, STAT_FIELDS, Campaign, CampaignRun


def campaign_get(*, application: Application, campaign_id) -> Campaign:
    """One of the application's campaigns; another application's is simply not found."""
    campaign = (
        Campaign.objects.filter(application=application, pk=campaign_id)
        .select_related("application", "template")
        .first()
    )
    if campaign is None:
        raise NotFound("No such campaign.")
    return campaign


def campaign_list(*, application: Application, filters: dict) -> QuerySet[Campaign]:
    qs = Campaign.objects.filter(application=application).select_related("template")
    if "status" in filters:
        qs = qs.filter(status=filters["status"])
    return qs


def campaign_stats(*, campaign: Campaign) -> dict[str, Any]:
    """The campaign's counters, summed over its runs (a handful of rows, never messages),
    with the audience members the recipients' rules left out: `skipped` and
    `skipped_by_reason` (CampaignRun.skips)."""
    names = (*STAT_FIELDS, *SKIP_FIELDS.values())
    totals = CampaignRun.objects.filter(campaign=campaign).aggregate(
        **{name: Sum(name) for name in names}
    )
    summed = CampaignRun(**{name: totals[name] or 0 for name in names})
    return summed.stats() | summed.skips()


def campaign_latest_run(*, campaign: Campaign) -> CampaignRun | None:
    return campaign.runs.select_related("template_version").order_by("-number").first()


def campaign_runs(*, campaign: Campaign) -> QuerySet[CampaignRun]:
    return campaign.runs.select_related("template_version").order_by("-number")


def run_progress(run: CampaignRun) -> float:
    """Share of the audience whose messages are terminal, 0..1."""
    if run.status == "completed":
        return 1.0
    if not run.audience_estimate:
        return 0.0
    done = run.targeted - run.pending
    return round(min(1.0, done / run.audience_estimate), 4)


# How far run_waiting counts; beyond it, the count says "at least this many".
WAITING_COUNT_MAX = 10_000


def run_waiting(run: CampaignRun, *, now: datetime | None = None) -> int:
    """How many of the run's pending messages wait for a later time now (local-time
    delivery, quiet hours): counted live, up to WAITING_COUNT_MAX. No query for a run that
    made none wait (`scheduled`) or has nothing pending; otherwise the run's messages are
    read through the (campaign_id, created_at) index, at most WAITING_COUNT_MAX of them
    counted."""
    if not run.scheduled or run.pending <= 0:
        return 0
    waiting = Message.objects.filter(
        campaign_id=run.campaign_id,
        campaign_run_id=run.pk,
        status=MessageStatus.PENDING,
        send_after__gt=now or timezone.now(),
    )
    return waiting.values("pk")[:WAITING_COUNT_MAX].count()


# --- The delivery funnel -------------------------------------------------------------------------

# How many of a campaign's failed messages (the newest) the failure reasons are counted over.
FAILURE_SAMPLE = 10_000
FAILURE_REASONS = 10


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def funnel(stats: dict[str, int]) -> dict[str, Any]:
    """A run's (or a campaign's summed) counters as a funnel. The counters are buckets: a
    message is in exactly one status, so one that was received is no longer counted in
    `successful`. Delivered is every message the provider took (successful, received,
    converted); received includes the converted ones (a conversion implies receipt)."""
    delivered = stats["successful"] + stats["received"] + stats["converted"]
    received = stats["received"] + stats["converted"]
    return {
        "targeted": stats["targeted"],
        "pending": stats["pending"],
        "delivered": delivered,
        "failed": stats["failed"],
        "received": received,
        "converted": stats["converted"],
        "cancelled": stats["cancelled"],
        "delivered_rate": _rate(delivered, stats["targeted"]),
        "received_rate": _rate(received, delivered),
        "converted_rate": _rate(stats["converted"], delivered),
    }


def failure_reasons(*, campaign_id, run_id=None) -> dict[str, Any]:
    """The error codes of a campaign's (or one run's) failed messages, most frequent first:
    {"reasons": [(code, count)], "sampled": bool}. Counted over at most the newest
    FAILURE_SAMPLE failed messages, read through the (campaign_id, created_at) index, so the
    page stays quick for a campaign of millions."""
    failed = Message.objects.filter(campaign_id=campaign_id, status=MessageStatus.FAILED)
    if run_id is not None:
        failed = failed.filter(campaign_run_id=run_id)
    newest = failed.order_by("-created_at").values("pk")[:FAILURE_SAMPLE]
    counts = list(
        Message.objects.filter(pk__in=Subquery(newest))
        .order_by()
        .values_list("error_code")
        .annotate(count=Count("pk"))
        .order_by("-count", "error_code")
    )
    total = sum(count for _code, count in counts)
    return {
        "reasons": [(code or "(no code)", count) for code, count in counts[:FAILURE_REASONS]],
        "others": sum(count for _code, count in counts[FAILURE_REASONS:]),
        "sampled": total >= FAILURE_SAMPLE,
    }
