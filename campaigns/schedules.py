"""A campaign's schedule as django-celery-beat rows: a one-off clocked task for
`scheduled_at`, a crontab task (with its time zone) for a recurring `schedule`."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime

from celery.schedules import crontab as celery_crontab
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask
from django_celery_beat.tzcrontab import TzAwareCrontab

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
START_TASK = "campaigns.start_scheduled_run"


class ScheduleInvalid(ValueError):
    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(str(errors))


def schedule_clean(schedule) -> dict | None:
    """{"crontab": "m h dom mon dow", "timezone": "Area/City"}, checked by Celery's own
    crontab parser; raises ScheduleInvalid."""
    if schedule is None:
        return None
    if not isinstance(schedule, dict):
        raise ScheduleInvalid({"schedule": ["An object with crontab and timezone."]})
    errors: dict[str, list[str]] = {}
    unknown = set(schedule) - {"crontab", "timezone"}
    for key in sorted(unknown):
        errors[key] = ["Unknown field."]
    expression = schedule.get("crontab")
    fields = expression.split() if isinstance(expression, str) else []
    if len(fields) != 5:
        errors["crontab"] = ["Five fields: minute hour day-of-month month day-of-week."]
    else:
        try:
            celery_crontab(**dict(zip(CRON_FIELDS, fields, strict=True)))
        except (ValueError, TypeError) as exc:
            errors["crontab"] = [f"Not a valid crontab: {exc}"]
    tz = schedule.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        errors["timezone"] = [f"Unknown time zone {tz!r}."]
    if errors:
        raise ScheduleInvalid(errors)
    return {"crontab": " ".join(fields), "timezone": tz}


def next_runs(schedule: dict, *, count: int = 3, after: datetime | None = None) -> list[datetime]:
    """The next `count` times a cleaned recurring schedule fires after `after` (now), in the
    schedule's time zone: computed by the crontab class the beat scheduler itself uses."""
    tz = zoneinfo.ZoneInfo(schedule.get("timezone") or "UTC")
    fields = dict(zip(CRON_FIELDS, schedule["crontab"].split(), strict=True))
    cron = TzAwareCrontab(**fields, tz=tz)
    moment = (after or timezone.now()).astimezone(tz)
    times = []
    for _ in range(count):
        last, delta, _now = cron.remaining_delta(moment)
        moment = (last + delta).astimezone(tz)
        times.append(moment)
    return times


def periodic_task_sync(campaign) -> PeriodicTask | None:
    """Creates, updates or removes the beat task that starts the campaign's runs."""
    task = campaign.periodic_task
    if not (campaign.schedule or campaign.scheduled_at):
        if task is not None:
            campaign.periodic_task = None
            task.delete()
        return None
    if task is None:
        task = PeriodicTask(name=f"campaign {campaign.pk}", task=START_TASK)
    task.crontab = task.clocked = task.interval = task.solar = None
    if campaign.schedule:
        fields = dict(zip(CRON_FIELDS, campaign.schedule["crontab"].split(), strict=True))
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            **fields, timezone=zoneinfo.ZoneInfo(campaign.schedule["timezone"])
        )
        task.one_off = False
        trigger = "crontab"
    else:
        task.clocked, _ = ClockedSchedule.objects.get_or_create(clocked_time=campaign.scheduled_at)
        task.one_off = True
        trigger = "scheduled_at"
    task.args = json.dumps([str(campaign.pk), trigger])
    task.queue = "campaigns"
    task.enabled = True
    task.save()
    campaign.periodic_task = task
    return task


def periodic_task_disable(campaign) -> None:
    if campaign.periodic_task_id:
        PeriodicTask.objects.filter(pk=campaign.periodic_task_id).update(enabled=False)
