"""Per-application message quotas, counted exactly under concurrency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import connection
from django.db.models import Case, F, Model, Q, Value, When
from django.utils import timezone

from accounts.models import Application, MessageQuota
from core.bulk import insert_statement
from core.exceptions import QuotaExceeded


def _seconds_until(moment: dt.datetime) -> int:
    return max(1, int((moment - timezone.now()).total_seconds()) + 1)


_CONSUME = """
UPDATE accounts_messagequota SET
    day_used = CASE WHEN day = %(today)s THEN day_used ELSE 0 END + %(n)s,
    month_used = CASE WHEN month = %(month)s THEN month_used ELSE 0 END + %(n)s,
    day = %(today)s,
    month = %(month)s
WHERE application_id = %(application)s
  AND (daily_limit IS NULL
       OR CASE WHEN day = %(today)s THEN day_used ELSE 0 END + %(n)s <= daily_limit)
  AND (monthly_limit IS NULL
       OR CASE WHEN month = %(month)s THEN month_used ELSE 0 END + %(n)s <= monthly_limit)
"""


def _consume(application: Application, count: int, today, month) -> bool:
    """The one conditional UPDATE; True when it counted. Written as SQL on PostgreSQL: on
    the API's hottest path, building it through the ORM cost more CPU than running it."""
    if connection.vendor == "postgresql":
        params = {"today": today, "month": month, "n": count, "application": application.pk}
        with connection.cursor() as cursor:
            cursor.execute(_CONSUME, params)
            return cursor.rowcount == 1
    day_used = Case(When(day=today, then=F("day_used")), default=Value(0))
    month_used = Case(When(month=month, then=F("month_used")), default=Value(0))
    return bool(
        MessageQuota.objects.filter(pk=application.pk)
        .filter(Q(daily_limit__isnull=True) | Q(daily_limit__gte=day_used + count))
        .filter(Q(monthly_limit__isnull=True) | Q(monthly_limit__gte=month_used + count))
        .update(day=today, day_used=day_used + count, month=month, month_used=month_used + count)
    )


def quota_consume(*, application: Application, count: int) -> None:
    """Adds `count` to today's and this month's usage, or raises QuotaExceeded and adds
    nothing. Call it inside the transaction that creates the messages, as late as possible:
    a rollback returns the quota too, and the row lock it takes lasts until the commit.

    Rolling the day and month over, checking both limits and counting are one UPDATE, so
    concurrent requests queue on the row and the counters never pass the limits.
    """
    if count <= 0:
        return
    today = timezone.now().date()
    month = today.replace(day=1)
    if not _consume(application, count, today, month):
        _refuse(application, count, today, month)
        quota_consume(application=application, count=count)


def quota_insert(
    *, application: Application, model: type[Model], columns: Sequence[str], rows: Sequence
) -> None:
    """Inserts `rows` and counts them against the quota in one statement (PostgreSQL): the
    quota's conditional UPDATE is a CTE and the INSERT happens only when it granted. One
    round trip where a transaction around quota_consume takes four (BEGIN, INSERT, UPDATE,
    COMMIT), for the API's single sends. Raises QuotaExceeded and inserts nothing when a
    limit would be passed."""
    if not rows:
        return
    today = timezone.now().date()
    month = today.replace(day=1)
    sql, params = insert_statement(
        model, columns, rows, where="WHERE EXISTS (SELECT 1 FROM granted)"
    )
    params.update(today=today, month=month, n=len(rows), application=application.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH granted AS ({_CONSUME} RETURNING 1) {sql}", params)
        if cursor.rowcount == len(rows):
            return
    _refuse(application, len(rows), today, month)
    quota_insert(application=application, model=model, columns=columns, rows=rows)


def _refuse(application: Application, count: int, today, month) -> None:
    """After the UPDATE counted nothing: raises QuotaExceeded with the limit that would be
    passed, or returns when the application had no quota row (it has one now, unlimited;
    the caller tries again)."""
    quota, created = MessageQuota.objects.get_or_create(application=application)
    if created:
        return
    used_today = quota.day_used if quota.day == today else 0
    used_month = quota.month_used if quota.month == month else 0
    if quota.daily_limit is not None and used_today + count > quota.daily_limit:
        tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
        raise QuotaExceeded(
            f"The daily quota of {quota.daily_limit} messages would be exceeded "
            f"({used_today} used, {count} requested).",
            retry_after=_seconds_until(tomorrow),
            details={"limit": quota.daily_limit, "used": used_today, "requested": count},
        )
    next_month = (month + dt.timedelta(days=32)).replace(day=1)
    raise QuotaExceeded(
        f"The monthly quota of {quota.monthly_limit} messages would be exceeded "
        f"({used_month} used, {count} requested).",
        retry_after=_seconds_until(dt.datetime.combine(next_month, dt.time(), dt.UTC)),
        details={"limit": quota.monthly_limit, "used": used_month, "requested": count},
    )
