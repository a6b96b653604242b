"""Reads of campaigns and their runs."""

from __future__ import annotations

from django.db.models import QuerySet, Sum

from accounts.models import Application
from core.exceptions import NotFound

from .models import STAT_FIELDS, Campaign, CampaignRun


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


def campaign_stats(*, campaign: Campaign) -> dict[str, int]:
    """The campaign's counters, summed over its runs (a handful of rows, never messages)."""
    totals = CampaignRun.objects.filter(campaign=campaign).aggregate(
        **{name: Sum(name) for name in STAT_FIELDS}
    )
    return {name: totals[name] or 0 for name in STAT_FIELDS}


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
