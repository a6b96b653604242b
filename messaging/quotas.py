"""Per-application message quotas, counted exactly under concurrency."""

from __future__ import annotations

import datetime as dt

from django.db.models import F, Q
from django.utils import timezone

from signal_project.api import QuotaExceeded

from .models import Application, MessageQuota


def _seconds_until(moment: dt.datetime) -> int:
    return max(1, int((moment - timezone.now()).total_seconds()) + 1)


def quota_consume(*, application: Application, count: int) -> None:
    """Adds `count` to today's and this month's usage, or raises QuotaExceeded and adds
    nothing. Must run inside the transaction that creates the messages, so a rollback
    returns the quota too.

    The check and the increment are one conditional UPDATE: the row lock it takes makes
    concurrent requests queue, so the counters never pass the limits.
    """
    if count <= 0:
        return
    now = timezone.now()
    today = now.date()
    month = today.replace(day=1)
    quota, _ = MessageQuota.objects.get_or_create(application=application)
    # Roll the windows over first; both statements are no-ops when nothing changed.
    MessageQuota.objects.filter(pk=application.pk).exclude(day=today).update(day=today, day_used=0)
    MessageQuota.objects.filter(pk=application.pk).exclude(month=month).update(
        month=month, month_used=0
    )
    granted = (
        MessageQuota.objects.filter(pk=application.pk)
        .filter(Q(daily_limit__isnull=True) | Q(day_used__lte=F("daily_limit") - count))
        .filter(Q(monthly_limit__isnull=True) | Q(month_used__lte=F("monthly_limit") - count))
        .update(day_used=F("day_used") + count, month_used=F("month_used") + count)
    )
    if granted:
        return
    quota.refresh_from_db()
    if quota.daily_limit is not None and quota.day_used + count > quota.daily_limit:
        tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
        raise QuotaExceeded(
            f"The daily quota of {quota.daily_limit} messages would be exceeded "
            f"({quota.day_used} used, {count} requested).",
            retry_after=_seconds_until(tomorrow),
            details={"limit": quota.daily_limit, "used": quota.day_used, "requested": count},
        )
    next_month = (month + dt.timedelta(days=32)).replace(day=1)
    raise QuotaExceeded(
        f"The monthly quota of {quota.monthly_limit} messages would be exceeded "
        f"({quota.month_used} used, {count} requested).",
        retry_after=_seconds_until(dt.datetime.combine(next_month, dt.time(), dt.UTC)),
        details={"limit": quota.monthly_limit, "used": quota.month_used, "requested": count},
    )
