"""Schedules: validation, the beat rows that follow a campaign, and the task beat starts."""

from __future__ import annotations

import json
import zoneinfo

import pytest
from django_celery_beat.models import PeriodicTask

from campaigns import schedules, services
from campaigns.models import CampaignRun, CampaignStatus, RunStatus
from campaigns.schedules import ScheduleInvalid, schedule_clean
from campaigns.tasks import start_scheduled_run

from .conftest import campaign_create, in_an_hour

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("given", "clean"),
    [
        (None, None),
        ({"crontab": "0 9 * * 1"}, {"crontab": "0 9 * * 1", "timezone": "UTC"}),
        (
            {"crontab": " */15  9-18 * * mon-fri ", "timezone": "Asia/Seoul"},
            {"crontab": "*/15 9-18 * * mon-fri", "timezone": "Asia/Seoul"},
        ),
        ({"crontab": "0 0 1 1 *", "timezone": "UTC"}, {"crontab": "0 0 1 1 *", "timezone": "UTC"}),
    ],
)
def test_a_valid_schedule_is_accepted_in_canonical_form(given, clean):
    assert schedule_clean(given) == clean


@pytest.mark.parametrize(
    ("given", "keys"),
    [
        ({"crontab": "0 9 * *"}, {"crontab"}),
        ({"crontab": "0 9 * * 1 2026"}, {"crontab"}),
        ({"crontab": "61 9 * * 1"}, {"crontab"}),
        ({"crontab": "0 24 * * 1"}, {"crontab"}),
        ({"crontab": "0 9 32 * *"}, {"crontab"}),
        ({"crontab": "x 9 * * 1"}, {"crontab"}),
        ({"crontab": "a b c d e"}, {"crontab"}),
        ({"crontab": 9}, {"crontab"}),
        ({}, {"crontab"}),
        ({"crontab": "0 9 * * 1", "timezone": "Mars/Olympus"}, {"timezone"}),
        ({"crontab": "0 9 * * 1", "timezone": "../../etc/passwd"}, {"timezone"}),
        ({"crontab": "0 9 * * 1", "timezone": 9}, {"timezone"}),
        ({"crontab": "0 9 * * 1", "tz": "UTC"}, {"tz"}),
        (
            {"crontab": "61 9 * * 1", "timezone": "Nowhere", "every": "day"},
            {"crontab", "timezone", "every"},
        ),
    ],
)
def test_an_invalid_schedule_is_refused_naming_its_fields(given, keys):
    with pytest.raises(ScheduleInvalid) as caught:
        schedule_clean(given)

    assert set(caught.value.errors) == keys


def test_a_schedule_must_be_an_object():
    with pytest.raises(ScheduleInvalid) as caught:
        schedule_clean("0 9 * * 1")

    assert set(caught.value.errors) == {"schedule"}


# --- periodic_task_sync ----------------------------------------------------------------------


def test_a_recurring_campaign_gets_a_crontab_task_in_its_time_zone(app):
    campaign = campaign_create(
        app.application,
        schedule=schedule_clean({"crontab": "30 9 * * 1", "timezone": "Asia/Seoul"}),
    )

    task = PeriodicTask.objects.select_related("crontab").get(pk=campaign.periodic_task_id)
    assert task.task == "campaigns.start_scheduled_run"
    assert (task.enabled, task.one_off, task.clocked_id, task.queue) == (
        True,
        False,
        None,
        "campaigns",
    )
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "30",
        "9",
        "*",
        "*",
        "1",
    )
    assert str(cron.timezone) == "Asia/Seoul"
    assert json.loads(task.args) == [str(campaign.pk), "crontab"]


def test_a_one_off_campaign_gets_a_clocked_task(app):
    when = in_an_hour()
    campaign = campaign_create(app.application, scheduled_at=when)

    task = PeriodicTask.objects.select_related("clocked").get(pk=campaign.periodic_task_id)
    assert (task.one_off, task.crontab_id, task.clocked.clocked_time) == (True, None, when)
    assert json.loads(task.args) == [str(campaign.pk), "scheduled_at"]


def test_sync_moves_the_task_between_kinds_and_removes_it(app):
    campaign = campaign_create(app.application, scheduled_at=in_an_hour())
    task_id = campaign.periodic_task_id

    campaign.scheduled_at = None
    campaign.schedule = schedule_clean({"crontab": "0 8 * * *", "timezone": "Europe/Paris"})
    schedules.periodic_task_sync(campaign)
    campaign.save()

    task = PeriodicTask.objects.select_related("crontab").get(pk=task_id)  # the same row
    assert (task.clocked_id, task.crontab.hour, str(task.crontab.timezone)) == (
        None,
        "8",
        "Europe/Paris",
    )
    assert task.crontab.timezone == zoneinfo.ZoneInfo("Europe/Paris")
    assert json.loads(task.args)[1] == "crontab"

    campaign.schedule = None
    schedules.periodic_task_sync(campaign)
    campaign.save()

    assert campaign.periodic_task is None
    assert not PeriodicTask.objects.filter(pk=task_id).exists()


def test_a_campaign_without_a_schedule_has_no_task(app):
    campaign = campaign_create(app.application)

    assert schedules.periodic_task_sync(campaign) is None
    assert campaign.periodic_task_id is None
    assert not PeriodicTask.objects.filter(name=f"campaign {campaign.pk}").exists()


# --- The task beat starts --------------------------------------------------------------------


def test_the_scheduled_task_starts_a_run_and_disables_a_one_off_task(app):
    campaign = campaign_create(app.application, scheduled_at=in_an_hour())

    run_id = start_scheduled_run(str(campaign.pk), "scheduled_at")

    run = CampaignRun.objects.get(pk=run_id)
    campaign.refresh_from_db()
    assert (run.campaign_id, run.number, run.trigger, run.status) == (
        campaign.pk,
        1,
        "scheduled_at",
        RunStatus.RUNNING,
    )
    assert campaign.status == CampaignStatus.RUNNING
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is False


def test_a_recurring_task_stays_enabled_for_its_next_run(app):
    campaign = campaign_create(app.application, schedule=schedule_clean({"crontab": "0 9 * * *"}))

    run_id = start_scheduled_run(str(campaign.pk), "crontab")

    assert CampaignRun.objects.get(pk=run_id).trigger == "crontab"
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is True


def test_the_scheduled_task_skips_a_cancelled_campaign(app):
    campaign = campaign_create(app.application, schedule=schedule_clean({"crontab": "0 9 * * *"}))
    services.campaign_cancel(campaign=campaign, actor="test")

    assert start_scheduled_run(str(campaign.pk), "crontab") is None

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert not CampaignRun.objects.filter(campaign=campaign).exists()


def test_the_scheduled_task_skips_a_campaign_whose_run_is_still_going(app):
    campaign = campaign_create(app.application, schedule=schedule_clean({"crontab": "0 9 * * *"}))
    start_scheduled_run(str(campaign.pk), "crontab")

    assert start_scheduled_run(str(campaign.pk), "crontab") is None
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1


def test_the_scheduled_task_ignores_a_deleted_campaign(app):
    campaign = campaign_create(app.application)
    campaign_id = str(campaign.pk)
    campaign.delete()

    assert start_scheduled_run(campaign_id, "crontab") is None
