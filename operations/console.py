"""The figures of the operators' console (the admin's index): sending per channel from the
per-minute rollups (messaging.delivery.rollups), provider error codes, the broker and the
workers from operations.probes, and the campaigns at work from their runs' counters. A
handful of queries over small tables, whatever the number of messages stored: nothing here
reads the messages table. Sums over the day's closed minutes and the top error codes are
computed once a minute and cached; the current minute and the last hour are read live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import urlencode

from django.core.cache import cache
from django.db import connection
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from campaigns.models import ACTIVE_STATUSES, Campaign, CampaignRun
from core.channels import SPECS
from messaging.delivery.rollups import BOUNDS_MS, BUCKETS
from messaging.models import DeliveryRollup, ErrorRollup

from . import probes

CAMPAIGNS_LISTED = 50
ERRORS_LISTED = 10
HOUR_MINUTES = 60
DAY_MINUTES = 1440
# Sums over minutes that are over are kept this long (keyed by the current minute).
CLOSED_MINUTES_CACHE_SECONDS = 120


def format_time(moment: datetime | None) -> str:
    """ "2026-12-06 23:10 UTC": in the site's time zone, named."""
    if moment is None:
        return "—"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def percentile_ms(histogram: list[int], fraction: float = 0.95) -> float | None:
    """The latency below which `fraction` of the histogram's attempts fall, interpolated
    within its bucket (BOUNDS_MS); None for an empty histogram. The last bucket has no upper
    bound: a percentile there reads as its lower bound."""
    total = sum(histogram)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            lower = BOUNDS_MS[index - 1] if index else 0.0
            if index >= len(BOUNDS_MS):
                return lower
            upper = BOUNDS_MS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return BOUNDS_MS[-1]


@dataclass
class Window:
    """Sending on one channel over a time window."""

    sent: int = 0  # attempts
    successful: int = 0
    failed_permanent: int = 0
    failed_temporary: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    @property
    def success_rate(self) -> float | None:
        """Of the messages that reached an outcome, the share delivered to the provider."""
        done = self.successful + self.failed_permanent
        return self.successful / done if done else None

    @property
    def p95_ms(self) -> float | None:
        return percentile_ms(self.histogram)


@dataclass
class ChannelFigures:
    channel: str
    label: str
    hour: Window
    day: Window
    per_minute: list[int]  # attempts, oldest minute first, HOUR_MINUTES of them
    links: dict[str, str] = field(default_factory=dict)  # the message log, filtered


@dataclass
class CampaignFigures:
    campaign: Campaign
    run: CampaignRun | None
    log_url: str = ""

    def _count(self, name: str) -> int:
        return getattr(self.run, name) if self.run else 0

    @property
    def targeted(self) -> int:
        return self._count("targeted")

    @property
    def delivered(self) -> int:
        # Statuses are buckets a message moves through: received and converted were
        # delivered first.
        return self._count("successful") + self._count("received") + self._count("converted")

    @property
    def received(self) -> int:
        return self._count("received") + self._count("converted")

    @property
    def converted(self) -> int:
        return self._count("converted")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def pending(self) -> int:
        return self._count("pending")

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.delivered if self.delivered else None

    @property
    def fanout_progress(self) -> float | None:
        """Messages made for the run against its audience's size estimated at the start."""
        if not self.run:
            return None
        if self.run.fanout_done:
            return 1.0
        estimate = self.run.audience_estimate
        return min(1.0, self.targeted / estimate) if estimate else None

    @property
    def send_progress(self) -> float | None:
        """Messages of the run no longer pending, against the messages made so far."""
        if not self.targeted:
            return None
        return (self.targeted - self.pending) / self.targeted


def window_starts(now: datetime) -> tuple[datetime, datetime, datetime]:
    """(this minute, the first minute of the last hour, of the last 24 hours)."""
    minute = now.replace(second=0, microsecond=0)
    return (
        minute,
        minute - timedelta(minutes=HOUR_MINUTES - 1),
        minute - timedelta(minutes=DAY_MINUTES - 1),
    )


@lru_cache(maxsize=4)
def _sums_sql(by_minute: bool, until: bool) -> str:
    """Each counter and histogram bucket summed per channel (and minute) from %(since)s (to
    %(until)s). Buckets as sum(latency[i]) per i: plain sums, where unnesting the arrays
    would multiply the rows by BUCKETS."""
    columns = [f"sum({name})" for name in COUNTERS]
    columns += [f"sum(latency[{i}])" for i in range(1, BUCKETS + 1)]
    keys = "channel, minute" if by_minute else "channel"
    window = "minute >= %(since)s" + (" AND minute < %(until)s" if until else "")
    table = DeliveryRollup._meta.db_table
    return (
        f"SELECT {keys}, {', '.join(columns)} FROM {table}"  # noqa: S608 (names are ours)
        f" WHERE {window} GROUP BY {keys}"
    )


COUNTERS = ("sent", "successful", "failed_permanent", "failed_temporary")


def _window(values) -> Window:
    numbers = [int(v or 0) for v in values]
    return Window(*numbers[: len(COUNTERS)], histogram=numbers[len(COUNTERS) :])


def _closed_minutes(minute: datetime, day: datetime) -> dict[str, list[int]]:
    """Per channel, the counters and buckets summed over the day's minutes before `minute`:
    minutes that are over change no more, so the sum is computed once a minute (per cache)
    and the current minute is added to it live."""
    key = f"console:day:{minute.isoformat()}"
    sums = cache.get(key)
    if sums is None:
        with connection.cursor() as cursor:
            cursor.execute(_sums_sql(False, True), {"since": day, "until": minute})
            sums = {row[0]: [int(v or 0) for v in row[1:]] for row in cursor.fetchall()}
        cache.set(key, sums, CLOSED_MINUTES_CACHE_SECONDS)
    return sums


def channel_figures(now: datetime) -> list[ChannelFigures]:
    """Per channel that sent in the last 24 hours: the hour's and the day's figures and the
    hour's attempts per minute. The hour per channel and minute in one query; the day is the
    sum of its closed minutes (cached for the minute) and the current one."""
    if connection.vendor != "postgresql":
        return []
    minute, hour, day = window_starts(now)
    with connection.cursor() as cursor:
        cursor.execute(_sums_sql(True, False), {"since": hour})
        minutes = cursor.fetchall()
    width = len(COUNTERS) + BUCKETS
    days = {channel: list(values) for channel, values in _closed_minutes(minute, day).items()}
    hours: dict[str, list[int]] = {}
    per_minute: dict[str, list[int]] = {}
    for channel, at, *values in minutes:
        values = [int(v or 0) for v in values]
        totals = hours.setdefault(channel, [0] * width)
        for i, value in enumerate(values):
            totals[i] += value
        if at == minute:
            day_totals = days.setdefault(channel, [0] * width)
            for i, value in enumerate(values):
                day_totals[i] += value
        slot = int((at - hour).total_seconds() // 60)
        if 0 <= slot < HOUR_MINUTES:
            per_minute.setdefault(channel, [0] * HOUR_MINUTES)[slot] += values[0]
    return [
        ChannelFigures(
            channel=channel,
            label=_label(channel),
            hour=_window(hours.get(channel, [])),
            day=_window(day_totals),
            per_minute=per_minute.get(channel, [0] * HOUR_MINUTES),
        )
        for channel, day_totals in sorted(days.items())
    ]


def minute_totals(figures: list[ChannelFigures]) -> list[int]:
    """Attempts per minute of the last hour, all channels."""
    if not figures:
        return [0] * HOUR_MINUTES
    return [sum(column) for column in zip(*(f.per_minute for f in figures), strict=True)]


def top_errors(now: datetime, limit: int = ERRORS_LISTED) -> list[dict]:
    """The most frequent error codes of failed attempts in the last 24 hours, per channel;
    computed once a minute (per cache)."""
    minute, _hour, day = window_starts(now)
    key = f"console:errors:{minute.isoformat()}:{limit}"
    rows = cache.get(key)
    if rows is None:
        rows = list(
            ErrorRollup.objects.filter(minute__gte=day)
            .values("channel", "error_code")
            .order_by()
            .annotate(count=Sum("count"))
            .order_by("-count", "channel", "error_code")[:limit]
        )
        cache.set(key, rows, CLOSED_MINUTES_CACHE_SECONDS)
    return [{**row, "label": _label(row["channel"])} for row in rows]


def _label(channel: str) -> str:
    spec = SPECS.get(channel)
    return spec.label if spec else channel


def active_campaigns(limit: int = CAMPAIGNS_LISTED) -> list[CampaignFigures]:
    """Running and paused campaigns, most recently changed first, each with its latest run."""
    campaigns = list(
        Campaign.objects.filter(status__in=ACTIVE_STATUSES)
        .select_related("application")
        .order_by("-updated_at")[:limit]
    )
    if not campaigns:
        return []
    latest = {
        run.campaign_id: run
        for run in CampaignRun.objects.filter(campaign__in=campaigns)
        .order_by("campaign_id", "-number")
        .distinct("campaign_id")
    }
    return [CampaignFigures(campaign=c, run=latest.get(c.pk)) for c in campaigns]


def broker_figures() -> dict:
    """Queue depths, the oldest waiting task's age and the worker processes alive, as the
    probes see them now (each bounded in time; unknown values are None)."""
    depths = probes.queue_depths()
    return {
        "queues": [{"name": name, "depth": depths.get(name)} for name in probes.queue_names()],
        "depths_known": bool(depths),
        # The depths just read, not read again; a broker that did not answer is not asked.
        "oldest_pending_seconds": probes.oldest_pending_seconds(depths) if depths else None,
        "workers": probes.workers_online(),
    }


def message_log_url(**filters) -> str:
    """The message log (the Message changelist) filtered: `channel`, `status`, `error_code`,
    `campaign_id`, `since` (a datetime)."""
    params = {}
    names = {"channel": "channel__exact", "status": "status__exact"}
    for name, value in filters.items():
        if value is None:
            continue
        if name == "since":
            params["created_at__gte"] = str(value)
        else:
            params[names.get(name, name)] = str(value)
    url = reverse("admin:messaging_message_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def console_context(now: datetime | None = None) -> dict:
    """Everything the console page shows."""
    now = now or timezone.now()
    minute, hour, day = window_starts(now)
    channels = channel_figures(now)
    for figures in channels:
        figures.links = {
            "hour": message_log_url(channel=figures.channel, since=hour),
            "day": message_log_url(channel=figures.channel, since=day),
            "failed": message_log_url(channel=figures.channel, status="failed", since=day),
        }
    errors = top_errors(now)
    for row in errors:
        row["url"] = message_log_url(
            channel=row["channel"], error_code=row["error_code"], since=day
        )
    campaigns = active_campaigns()
    for figures in campaigns:
        figures.log_url = message_log_url(campaign_id=figures.campaign.pk)
    return {
        "now": now,
        "now_text": format_time(now),
        "hour_start": hour,
        "day_start": day,
        "hour_start_text": format_time(hour),
        "day_start_text": format_time(day),
        "channels": channels,
        "minute_totals": minute_totals(channels),
        "errors": errors,
        "campaigns": campaigns,
        "broker": broker_figures(),
    }
