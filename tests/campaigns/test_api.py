"""The campaign endpoints: create, read, update, execute, cancel, preview, runs; their errors;
and the beat rows and run statistics behind them."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_celery_beat.models import PeriodicTask

from accounts.services import api_key_revoke
from campaigns import services
from campaigns.models import Campaign, CampaignRun, CampaignStatus, RunStatus
from messaging import dispatch
from messaging.models import Message, MessageStatus
from messaging.services.messages import message_report_status, messages_cancel
from messaging.services.subscriptions import subscription_disable
from tests.assertions import assert_error
from tests.conftest import api_client, fcm_token, subscription_create

from .conftest import beat_rows, fanout, messages_succeed, run_messages, template_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/campaigns"
STAT_KEYS = {"targeted", "pending", "successful", "failed", "received", "converted", "cancelled"}
NO_SKIPS = {"skipped": 0, "skipped_by_reason": {"opted_out": 0, "frequency_cap": 0}}


def url(campaign_id, action: str = "") -> str:
    return f"{URL}/{campaign_id}" + (f"/{action}" if action else "")


def post(client, body, **headers):
    return client.post(URL, body, format="json", **headers)


def create(client, **body) -> dict:
    body.setdefault("name", "summer-sale")
    if "template_id" not in body:
        body.setdefault("title", "Sale")
        body.setdefault("body", "Half price")
    response = post(client, body)
    assert response.status_code == 201, response.content
    return response.json()


def counts() -> tuple[int, ...]:
    return (Campaign.objects.count(), *beat_rows())


def future(hours: int = 1) -> str:
    return (timezone.now() + timedelta(hours=hours)).isoformat()


# --- Create and read -------------------------------------------------------------------------


def test_a_campaign_without_a_time_is_a_draft_with_no_beat_task(server_api, app):
    response = post(server_api, {"name": "summer-sale", "title": "Sale", "body": "Half price"})

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "draft"
    assert body["targeting_criteria"] == {}
    campaign = Campaign.objects.get(pk=body["id"])
    assert (campaign.application_id, campaign.status, campaign.periodic_task_id) == (
        app.application.pk,
        CampaignStatus.DRAFT,
        None,
    )
    assert not PeriodicTask.objects.filter(name=f"campaign {campaign.pk}").exists()


def test_get_has_the_contract_fields(server_api, app):
    created = create(
        server_api,
        targeting_criteria={"countries": ["kr"], "tags": {"plan": "gold"}},
        scheduled_at=future(),
    )

    response = server_api.get(url(created["id"]))

    assert response.status_code == 200
    body = response.json()
    assert {"id", "name", "status", "targeting_criteria", "scheduled_at", "stats"} <= set(body)
    assert body["id"] == created["id"]
    assert (body["name"], body["status"]) == ("summer-sale", "scheduled")
    assert body["targeting_criteria"] == {"countries": ["KR"], "tags": {"plan": "gold"}}
    assert parse_datetime(body["scheduled_at"]) == parse_datetime(created["scheduled_at"])
    assert body["stats"] == dict.fromkeys(STAT_KEYS, 0) | NO_SKIPS
    assert body["latest_run"] is None


def test_scheduled_at_makes_it_scheduled_with_a_clocked_one_off_task(server_api):
    when = timezone.now() + timedelta(hours=3)

    body = create(server_api, scheduled_at=when.isoformat())

    assert body["status"] == "scheduled"
    campaign = Campaign.objects.get(pk=body["id"])
    task = PeriodicTask.objects.select_related("clocked").get(pk=campaign.periodic_task_id)
    assert task.task == "campaigns.start_scheduled_run"
    assert (task.enabled, task.one_off, task.crontab_id) == (True, True, None)
    assert task.clocked.clocked_time == when
    assert json.loads(task.args) == [body["id"], "scheduled_at"]


def test_a_schedule_makes_it_scheduled_with_a_crontab_task_in_its_zone(server_api):
    body = create(server_api, schedule={"crontab": "30 9 * * 1", "timezone": "Asia/Seoul"})

    assert body["status"] == "scheduled"
    assert body["schedule"] == {"crontab": "30 9 * * 1", "timezone": "Asia/Seoul"}
    campaign = Campaign.objects.get(pk=body["id"])
    task = PeriodicTask.objects.select_related("crontab").get(pk=campaign.periodic_task_id)
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "30",
        "9",
        "*",
        "*",
        "1",
    )
    assert str(cron.timezone) == "Asia/Seoul"
    assert (task.enabled, task.one_off, task.clocked_id) == (True, False, None)
    assert json.loads(task.args) == [body["id"], "crontab"]


def test_a_schedule_without_a_zone_runs_in_utc(server_api):
    body = create(server_api, schedule={"crontab": "0 9 * * *"})

    task = PeriodicTask.objects.select_related("crontab").get(
        pk=Campaign.objects.get(pk=body["id"]).periodic_task_id
    )
    assert str(task.crontab.timezone) == "UTC"


def test_a_campaign_from_a_template(server_api, app):
    version = template_create(app.application)

    body = create(server_api, template_id=str(version.template_id), variables={"user_name": "Kim"})

    assert body["template_id"] == str(version.template_id)
    assert body["variables"] == {"user_name": "Kim"}
    assert Campaign.objects.get(pk=body["id"]).template_id == version.template_id


# --- Bad input ---------------------------------------------------------------------------------

TEMPLATE = object()  # replaced by a real template id of the caller's application


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"targeting_criteria": {"segment": "vip"}}, ["targeting_criteria", "segment"]),
        ({"targeting_criteria": {"tags": {"plan": 1}}}, ["targeting_criteria", "tags"]),
        ({"targeting_criteria": {"tags": ["plan"]}}, ["targeting_criteria", "tags"]),
        ({"targeting_criteria": {"countries": ["KOR"]}}, ["targeting_criteria", "countries"]),
        ({"targeting_criteria": {"countries": ["K1"]}}, ["targeting_criteria", "countries"]),
        ({"targeting_criteria": {"channels": ["Pigeon"]}}, ["targeting_criteria", "channels"]),
        (
            {"targeting_criteria": {"last_active_after": "2026-10-01T00:00:00"}},
            ["targeting_criteria", "last_active_after"],
        ),
        (
            {"targeting_criteria": {"last_active_after": "2026-13-45T00:00:00Z"}},
            ["targeting_criteria", "last_active_after"],
        ),
        ({"targeting_criteria": "plan=gold"}, ["targeting_criteria"]),
        ({"schedule": {"crontab": "0 9 * *"}}, ["schedule", "crontab"]),
        ({"schedule": {"crontab": "61 9 * * 1"}}, ["schedule", "crontab"]),
        ({"schedule": {"crontab": "x y * * 1"}}, ["schedule", "crontab"]),
        (
            {"schedule": {"crontab": "0 9 * * 1", "timezone": "Mars/Olympus"}},
            ["schedule", "timezone"],
        ),
        ({"schedule": {"crontab": "0 9 * * 1", "every": "week"}}, ["schedule", "every"]),
        ({"schedule": "0 9 * * 1"}, ["schedule"]),
        ({"scheduled_at": "2020-01-01T00:00:00Z"}, ["scheduled_at"]),
        ({"scheduled_at": "tomorrow"}, ["scheduled_at"]),
        (
            {"scheduled_at": "FUTURE", "schedule": {"crontab": "0 9 * * 1"}},
            ["schedule"],
        ),
        ({"template_id": TEMPLATE}, ["title"]),  # with the default title
        ({"title": ..., "body": ...}, ["non_field_errors"]),
        ({"audience": "everyone"}, ["audience"]),
        ({"throttle_per_minute": 0}, ["throttle_per_minute"]),
        ({"priority": "urgent"}, ["priority"]),
        ({"ttl": -1}, ["ttl"]),
        ({"name": ...}, ["name"]),
    ],
)
def test_bad_input_is_a_validation_error_that_creates_nothing(server_api, app, overrides, path):
    version = template_create(app.application)
    body = {"name": "summer-sale", "title": "Sale", "body": "Half price"}
    for key, value in overrides.items():
        if value is TEMPLATE:
            value = str(version.template_id)
        elif value == "FUTURE":
            value = future()
        body[key] = value
    body = {key: value for key, value in body.items() if value is not ...}
    before = counts()

    details = assert_error(post(server_api, body), 400, "validation_error")

    node = details
    for key in path:
        assert key in node, details
        node = node[key]
    assert node and all(isinstance(message, str) and message for message in node), details
    assert counts() == before


def test_another_applications_template_is_not_found_and_creates_nothing(server_api, other_app):
    foreign = template_create(other_app.application)
    before = counts()

    assert_error(
        post(server_api, {"name": "x", "template_id": str(foreign.template_id)}), 404, "not_found"
    )
    assert counts() == before


def test_an_unknown_template_is_not_found(server_api):
    assert_error(
        post(server_api, {"name": "x", "template_id": str(uuid.uuid4())}), 404, "not_found"
    )
    assert Campaign.objects.count() == 0


# --- Idempotency-Key -------------------------------------------------------------------------


def test_the_same_idempotency_key_and_body_replays_the_first_response(server_api):
    body = {"name": "once", "title": "t", "schedule": {"crontab": "0 9 * * *"}}

    first = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert Campaign.objects.count() == 1
    assert PeriodicTask.objects.filter(task="campaigns.start_scheduled_run").count() == 1


def test_the_same_idempotency_key_with_another_body_is_a_conflict(server_api):
    post(server_api, {"name": "once", "title": "t"}, HTTP_IDEMPOTENCY_KEY="k-1")

    response = post(server_api, {"name": "twice", "title": "t"}, HTTP_IDEMPOTENCY_KEY="k-1")

    assert_error(response, 422, "idempotency_conflict")
    assert list(Campaign.objects.values_list("name", flat=True)) == ["once"]


def test_idempotency_keys_are_per_application(server_api, other_server_api):
    post(server_api, {"name": "once", "title": "t"}, HTTP_IDEMPOTENCY_KEY="k-1")

    response = post(other_server_api, {"name": "other", "title": "t"}, HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 201
    assert Campaign.objects.count() == 2


# --- Update ------------------------------------------------------------------------------------


def test_put_changes_a_draft(server_api):
    created = create(server_api)

    response = server_api.put(
        url(created["id"]),
        {
            "name": "winter-sale",
            "targeting_criteria": {"countries": ["jp"]},
            "throttle_per_minute": 600,
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["status"], body["throttle_per_minute"]) == (
        "winter-sale",
        "draft",
        600,
    )
    assert body["targeting_criteria"] == {"countries": ["JP"]}
    campaign = Campaign.objects.get(pk=created["id"])
    assert (campaign.name, campaign.title) == ("winter-sale", "Sale")  # the rest unchanged


def test_put_with_a_time_schedules_a_draft(server_api):
    created = create(server_api)

    body = server_api.put(url(created["id"]), {"scheduled_at": future(2)}, format="json").json()

    assert body["status"] == "scheduled"
    campaign = Campaign.objects.get(pk=created["id"])
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).clocked_id is not None


def test_put_moves_the_schedule_and_its_task(server_api):
    created = create(server_api, schedule={"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"})
    task_id = Campaign.objects.get(pk=created["id"]).periodic_task_id

    response = server_api.put(
        url(created["id"]),
        {"schedule": {"crontab": "15 18 * * 5", "timezone": "Europe/Paris"}},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["status"] == "scheduled"
    task = PeriodicTask.objects.select_related("crontab").get(pk=task_id)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("15", "18", "5")
    assert str(task.crontab.timezone) == "Europe/Paris"
    assert task.enabled


def test_put_from_a_crontab_to_a_time_makes_the_task_clocked(server_api):
    created = create(server_api, schedule={"crontab": "0 9 * * 1"})
    when = timezone.now() + timedelta(days=2)

    response = server_api.put(
        url(created["id"]), {"schedule": None, "scheduled_at": when.isoformat()}, format="json"
    )

    assert response.status_code == 200, response.content
    campaign = Campaign.objects.get(pk=created["id"])
    task = PeriodicTask.objects.select_related("clocked").get(pk=campaign.periodic_task_id)
    assert (task.crontab_id, task.clocked.clocked_time, task.one_off) == (None, when, True)
    assert json.loads(task.args) == [created["id"], "scheduled_at"]


def test_dropping_the_schedule_returns_to_draft_and_removes_the_task(server_api):
    created = create(server_api, schedule={"crontab": "0 9 * * 1"})
    task_id = Campaign.objects.get(pk=created["id"]).periodic_task_id

    response = server_api.put(url(created["id"]), {"schedule": None}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "draft"
    assert Campaign.objects.get(pk=created["id"]).periodic_task_id is None
    assert not PeriodicTask.objects.filter(pk=task_id).exists()


def test_put_refuses_a_time_while_a_schedule_stays(server_api):
    created = create(server_api, schedule={"crontab": "0 9 * * 1"})

    details = assert_error(
        server_api.put(url(created["id"]), {"scheduled_at": future()}, format="json"),
        400,
        "validation_error",
    )

    assert "schedule" in details
    assert Campaign.objects.get(pk=created["id"]).scheduled_at is None


def test_bad_put_changes_nothing(server_api):
    created = create(server_api, schedule={"crontab": "0 9 * * 1"})
    before = counts()

    details = assert_error(
        server_api.put(
            url(created["id"]),
            {"name": "renamed", "targeting_criteria": {"channels": ["Fax"]}},
            format="json",
        ),
        400,
        "validation_error",
    )

    assert "channels" in details["targeting_criteria"]
    assert counts() == before
    assert Campaign.objects.get(pk=created["id"]).name == "summer-sale"


def _running(server_api) -> dict:
    created = create(server_api)
    assert server_api.post(url(created["id"], "execute")).status_code == 202
    return created


def _completed(server_api) -> dict:
    created = create(server_api)  # nobody matches: the run completes at its first step
    server_api.post(url(created["id"], "execute"))
    fanout(CampaignRun.objects.get(campaign_id=created["id"]).pk)
    assert Campaign.objects.get(pk=created["id"]).status == CampaignStatus.COMPLETED
    return created


def _cancelled(server_api) -> dict:
    created = create(server_api)
    assert server_api.post(url(created["id"], "cancel")).status_code == 200
    return created


@pytest.mark.parametrize("make", [_running, _completed, _cancelled])
def test_put_after_draft_and_scheduled_is_an_invalid_transition(server_api, make):
    created = make(server_api)
    status = Campaign.objects.get(pk=created["id"]).status

    details = assert_error(
        server_api.put(url(created["id"]), {"name": "late"}, format="json"),
        409,
        "invalid_transition",
    )

    assert details == {"status": status}
    assert Campaign.objects.get(pk=created["id"]).name == "summer-sale"


# --- Execute, fan-out and statistics ---------------------------------------------------------


def test_execute_starts_a_running_run(server_api):
    created = create(server_api, scheduled_at=future())

    response = server_api.post(url(created["id"], "execute"))

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "running"
    assert (body["latest_run"]["number"], body["latest_run"]["status"]) == (1, "running")
    run = CampaignRun.objects.get(campaign_id=created["id"])
    assert (run.status, run.trigger, run.number) == (RunStatus.RUNNING, "execute", 1)
    campaign = Campaign.objects.get(pk=created["id"])
    assert campaign.status == CampaignStatus.RUNNING
    # A one-off campaign run by hand will not run again at its time.
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is False


def test_the_fan_out_sends_one_message_per_matching_subscription_and_counts_them(
    server_api, app, other_app, settings
):
    settings.CAMPAIGN_BATCH_SIZE = 2
    version = template_create(app.application)
    gold = [
        subscription_create(app.application, tags={"plan": "gold"}, language="ko"),
        subscription_create(app.application, tags={"plan": "gold"}, language="en-US"),
        subscription_create(
            app.application, type="AndroidPush", token=fcm_token(), tags={"plan": "gold"}
        ),
        subscription_create(app.application, tags={"plan": "gold", "beta": "1"}, language="en"),
        subscription_create(app.application, tags={"plan": "gold"}),
    ]
    disabled = subscription_create(app.application, tags={"plan": "gold"})
    subscription_disable(subscription_id=disabled.pk, reason="test")
    subscription_create(app.application, tags={"plan": "silver"})
    subscription_create(other_app.application, tags={"plan": "gold"})
    created = create(
        server_api,
        template_id=str(version.template_id),
        variables={"user_name": "Kim", "event_name": "Sale", "event_id": "7"},
        targeting_criteria={"tags": {"plan": "gold"}},
    )
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])

    steps = fanout(run.pk)

    assert steps == 3  # batches of 2, 2 and 1
    messages = list(run_messages(run))
    assert sorted(m.subscription_id for m in messages) == sorted(s.pk for s in gold)
    assert {m.status for m in messages} == {MessageStatus.PENDING}
    assert {m.campaign_id for m in messages} == {run.campaign_id}
    titles = {m.subscription_id: m.title for m in messages}
    assert titles[gold[0].pk] == "안녕 Kim"
    assert titles[gold[1].pk] == "Hello Kim"  # en-US falls back to en
    assert titles[gold[4].pk] == "안녕 Kim"  # no language: the default
    assert {m.template_version_id for m in messages} == {version.pk}
    run.refresh_from_db()
    assert (run.targeted, run.pending, run.audience_estimate, run.fanout_done) == (5, 5, 5, True)
    assert run.status == RunStatus.RUNNING
    assert services.run_fanout_step(run_id=run.pk) is False  # nothing more, nothing twice
    assert run_messages(run).count() == 5

    # Delivery reports two, the client reports one received and one converted.
    messages_succeed(messages[:2])
    message_report_status(message=messages[0], status="received", actor="test")
    message_report_status(message=messages[1], status="received", actor="test")
    message_report_status(message=messages[1], status="converted", actor="test")

    stats = server_api.get(url(created["id"])).json()["stats"]
    assert stats == {
        "targeted": 5,
        "pending": 3,
        "successful": 0,
        "failed": 0,
        "received": 1,
        "converted": 1,
        "cancelled": 0,
        **NO_SKIPS,
    }
    assert server_api.get(url(created["id"])).json()["status"] == "running"

    # The last pending ones cancelled: nothing is pending, the run and campaign complete.
    messages_cancel(message_ids=[m.pk for m in messages[2:]], actor="test")

    body = server_api.get(url(created["id"])).json()
    assert body["stats"]["pending"] == 0
    assert body["stats"]["cancelled"] == 3
    assert body["status"] == "completed"
    assert (body["latest_run"]["status"], body["latest_run"]["progress"]) == ("completed", 1.0)


def test_progress_counts_terminal_messages_against_the_audience(server_api, app):
    for _ in range(4):
        subscription_create(app.application)
    created = create(server_api)
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])
    fanout(run.pk)

    messages_succeed(list(run_messages(run))[:1])

    latest = server_api.get(url(created["id"])).json()["latest_run"]
    assert latest["progress"] == 0.25
    assert latest["stats"]["successful"] == 1


def test_a_throttled_run_takes_at_most_its_rate_per_step(server_api, app, settings):
    settings.CAMPAIGN_BATCH_SIZE = 1000
    for _ in range(3):
        subscription_create(app.application)
    created = create(server_api, throttle_per_minute=2)
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])

    assert services.run_fanout_step(run_id=run.pk) is True
    assert run_messages(run).count() == 2


@pytest.mark.parametrize("make", [_completed, _cancelled, _running])
def test_execute_is_refused_unless_draft_or_scheduled(server_api, make):
    created = make(server_api)
    status = Campaign.objects.get(pk=created["id"]).status
    runs = CampaignRun.objects.count()

    details = assert_error(
        server_api.post(url(created["id"], "execute")), 409, "invalid_transition"
    )

    assert details == {"status": status}
    assert CampaignRun.objects.count() == runs
    assert Campaign.objects.get(pk=created["id"]).status == status


def test_a_recurring_campaign_waits_for_its_next_run_then_runs_again(server_api, app):
    subscription_create(app.application)
    created = create(server_api, schedule={"crontab": "0 9 * * *"})
    server_api.post(url(created["id"], "execute"))
    first = CampaignRun.objects.get(campaign_id=created["id"])
    fanout(first.pk)
    messages_succeed(run_messages(first))

    assert Campaign.objects.get(pk=created["id"]).status == CampaignStatus.SCHEDULED
    response = server_api.post(url(created["id"], "execute"))

    assert response.status_code == 202
    assert response.json()["latest_run"]["number"] == 2


# --- Cancel ----------------------------------------------------------------------------------


def test_cancel_cancels_and_disables_the_beat_task(server_api):
    created = create(server_api, schedule={"crontab": "0 9 * * 1"})

    response = server_api.post(url(created["id"], "cancel"))

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    campaign = Campaign.objects.get(pk=created["id"])
    assert campaign.status == CampaignStatus.CANCELLED
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is False


def test_cancelling_a_running_campaign_cancels_its_run_and_its_pending_messages(
    server_api, app, django_capture_on_commit_callbacks
):
    for _ in range(3):
        subscription_create(app.application)
    created = create(server_api)
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])
    fanout(run.pk)
    messages_succeed(list(run_messages(run))[:1])

    with django_capture_on_commit_callbacks() as callbacks:
        response = server_api.post(url(created["id"], "cancel"))

    assert response.status_code == 200
    run.refresh_from_db()
    assert (run.status, run.finished_at is not None) == (RunStatus.CANCELLED, True)
    assert len(callbacks) == 1  # the task that cancels the run's pending messages
    # What that task does (no worker here):
    assert services.run_cancel_messages(run_id=run.pk, actor="test") == 2
    statuses = sorted(run_messages(run).values_list("status", flat=True))
    assert statuses == ["cancelled", "cancelled", "successful"]
    stats = server_api.get(url(created["id"])).json()["stats"]
    assert (stats["pending"], stats["cancelled"], stats["successful"]) == (0, 2, 1)


def test_cancel_twice_is_an_invalid_transition(server_api):
    created = create(server_api)
    server_api.post(url(created["id"], "cancel"))

    details = assert_error(server_api.post(url(created["id"], "cancel")), 409, "invalid_transition")

    assert details == {"status": "cancelled"}


def test_a_completed_campaign_cannot_be_cancelled(server_api):
    created = _completed(server_api)

    assert_error(server_api.post(url(created["id"], "cancel")), 409, "invalid_transition")
    assert Campaign.objects.get(pk=created["id"]).status == CampaignStatus.COMPLETED


# --- Preview ---------------------------------------------------------------------------------


def test_preview_counts_the_matching_enabled_subscriptions_by_channel(server_api, app, other_app):
    for _ in range(3):
        subscription_create(app.application, country="KR")
    for _ in range(2):
        subscription_create(app.application, type="AndroidPush", token=fcm_token(), country="KR")
    subscription_create(app.application, type="Email", token="kim@example.com", country="KR")
    disabled = subscription_create(app.application, country="KR")
    subscription_disable(subscription_id=disabled.pk, reason="test")
    subscription_create(app.application, country="JP")
    subscription_create(other_app.application, country="KR")
    created = create(
        server_api,
        targeting_criteria={"countries": ["KR"], "channels": ["iOSPush", "AndroidPush"]},
    )

    response = server_api.post(url(created["id"], "preview"))

    assert response.status_code == 200
    body = response.json()
    assert body["audience_size"] == 5
    assert body["by_channel"] == {"iOSPush": 3, "AndroidPush": 2}
    assert len(body["sample"]) == 3
    assert {item["title"] for item in body["sample"]} == {"Sale"}
    assert str(disabled.pk) not in {item["subscription_id"] for item in body["sample"]}
    assert not CampaignRun.objects.exists()  # a preview sends nothing
    assert Message.objects.count() == 0


def test_a_campaign_by_user_tags_previews_and_reaches_only_those_users(server_api, app):
    kim = [
        subscription_create(app.application, external_user_id="kim"),
        subscription_create(
            app.application, type="AndroidPush", token=fcm_token(), external_user_id="kim"
        ),
    ]
    subscription_create(app.application, external_user_id="lee")
    subscription_create(app.application, tags={"tier": "vip"})  # its own tag, not its user's
    subscription_create(app.application)
    assert (
        server_api.put("/api/v1/users/kim", {"tags": {"tier": "vip"}}, format="json").status_code
        == 200
    )
    server_api.put("/api/v1/users/lee", {"tags": {"tier": "basic"}}, format="json")
    created = create(server_api, targeting_criteria={"user_tags": {"tier": "vip"}})
    assert created["targeting_criteria"] == {"user_tags": {"tier": "vip"}}

    preview = server_api.post(url(created["id"], "preview")).json()
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])
    fanout(run.pk)

    assert preview["audience_size"] == 2
    assert preview["by_channel"] == {"iOSPush": 1, "AndroidPush": 1}
    reached = set(run_messages(run).values_list("subscription_id", flat=True))
    assert reached == {s.pk for s in kim}
    run.refresh_from_db()
    assert run.targeted == preview["audience_size"]


def test_user_tags_must_be_strings(server_api):
    details = assert_error(
        post(
            server_api, {"name": "x", "title": "t", "targeting_criteria": {"user_tags": {"a": 1}}}
        ),
        400,
        "validation_error",
    )

    assert "targeting_criteria" in details


def test_preview_renders_the_template_in_each_subscriptions_language(server_api, app):
    version = template_create(app.application)
    english = subscription_create(app.application, language="en-GB")
    korean = subscription_create(app.application, language="ko")
    created = create(
        server_api, template_id=str(version.template_id), variables={"user_name": "Kim"}
    )

    sample = server_api.post(url(created["id"], "preview")).json()["sample"]

    by_subscription = {item["subscription_id"]: item for item in sample}
    assert by_subscription[str(english.pk)]["title"] == "Hello Kim"
    assert by_subscription[str(english.pk)]["body"] == "!"
    assert by_subscription[str(korean.pk)]["title"] == "안녕 Kim"
    assert by_subscription[str(korean.pk)]["data"] == {"event_id": ""}
    assert by_subscription[str(korean.pk)]["missing_variables"] == ["event_id", "event_name"]
    assert by_subscription[str(korean.pk)]["template_version"] == 1


def test_preview_of_an_empty_audience(server_api):
    created = create(server_api, targeting_criteria={"tags": {"plan": "none"}})

    body = server_api.post(url(created["id"], "preview")).json()

    assert body == {"audience_size": 0, "by_channel": {}, "sample": []}


# --- Runs --------------------------------------------------------------------------------------


def test_runs_lists_each_run_newest_first_with_its_stats(server_api, app):
    subscription_create(app.application)
    created = create(server_api, schedule={"crontab": "0 9 * * *"})
    for _ in range(2):
        server_api.post(url(created["id"], "execute"))
        run = CampaignRun.objects.get(campaign_id=created["id"], status=RunStatus.RUNNING)
        fanout(run.pk)
        messages_succeed(run_messages(run))

    response = server_api.get(url(created["id"], "runs"))

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert [run["number"] for run in body["results"]] == [2, 1]
    first = body["results"][1]
    assert (first["trigger"], first["status"], first["progress"]) == ("execute", "completed", 1.0)
    assert first["stats"] == {
        **dict.fromkeys(STAT_KEYS, 0),
        "targeted": 1,
        "successful": 1,
        **NO_SKIPS,
    }
    assert server_api.get(url(created["id"])).json()["stats"]["targeted"] == 2


# --- List --------------------------------------------------------------------------------------


def test_the_list_is_the_applications_own_newest_first_filtered_by_status(
    server_api, other_server_api
):
    draft = create(server_api, name="a")
    scheduled = create(server_api, name="b", schedule={"crontab": "0 9 * * *"})
    cancelled = create(server_api, name="c")
    server_api.post(url(cancelled["id"], "cancel"))
    create(other_server_api, name="foreign")

    everything = server_api.get(URL).json()
    only_scheduled = server_api.get(URL, {"status": "scheduled"}).json()

    assert [c["id"] for c in everything["results"]] == [
        cancelled["id"],
        scheduled["id"],
        draft["id"],
    ]
    assert everything["next"] is None
    assert [c["id"] for c in only_scheduled["results"]] == [scheduled["id"]]
    assert set(everything["results"][0]["stats"]) == STAT_KEYS | set(NO_SKIPS)


def test_the_list_is_paginated(server_api):
    ids = [create(server_api, name=f"c{n}")["id"] for n in range(5)]

    seen, page_url, pages = [], URL + "?limit=2", 0
    while page_url:
        body = server_api.get(page_url).json()
        seen += [c["id"] for c in body["results"]]
        assert len(body["results"]) <= 2
        page_url, pages = body["next"], pages + 1

    assert seen == ids[::-1]
    assert pages == 3


def test_an_unknown_status_filter_is_a_validation_error(server_api):
    details = assert_error(server_api.get(URL, {"status": "stopped"}), 400, "validation_error")

    assert "status" in details


# --- Other applications and client keys ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "action", "body"),
    [
        ("get", "", None),
        ("put", "", {"name": "stolen"}),
        ("post", "execute", None),
        ("post", "cancel", None),
        ("post", "pause", None),
        ("post", "resume", None),
        ("post", "preview", None),
        ("get", "runs", None),
    ],
)
def test_another_applications_campaign_is_not_found(
    server_api, other_server_api, app, method, action, body
):
    subscription_create(app.application, tags={"secret": "yes"})
    created = create(server_api, name="secret-campaign", schedule={"crontab": "0 9 * * *"})
    before = Campaign.objects.values().get(pk=created["id"])

    response = getattr(other_server_api, method)(url(created["id"], action), body, format="json")

    assert_error(response, 404, "not_found")
    assert b"secret" not in response.content
    assert created["id"].encode() not in response.content
    assert Campaign.objects.values().get(pk=created["id"]) == before
    assert not CampaignRun.objects.exists()


@pytest.mark.parametrize(
    ("method", "action", "body"),
    [
        ("post", None, {"name": "x", "title": "t"}),
        ("get", None, None),
        ("get", "", None),
        ("put", "", {"name": "renamed"}),
        ("post", "execute", None),
        ("post", "cancel", None),
        ("post", "pause", None),
        ("post", "resume", None),
        ("post", "preview", None),
        ("get", "runs", None),
    ],
)
def test_a_client_key_may_call_no_campaign_endpoint(server_api, client_api, method, action, body):
    created = create(server_api)
    before = (Campaign.objects.values().get(pk=created["id"]), Campaign.objects.count())
    path = URL if action is None else url(created["id"], action)

    response = getattr(client_api, method)(path, body, format="json")

    assert_error(response, 403, "permission_denied")
    assert (Campaign.objects.values().get(pk=created["id"]), Campaign.objects.count()) == before
    assert not CampaignRun.objects.exists()


def test_no_key_is_unauthenticated(anonymous_api):
    assert_error(anonymous_api.get(URL), 401, "authentication_failed")


def test_a_revoked_server_key_no_longer_works(server_api, app):
    api_key_revoke(api_key=app.server.api_key, actor="test")

    assert api_client(app.server.raw).get(URL).status_code == 401


def test_put_cannot_leave_a_campaign_without_content(server_api, app):
    version = template_create(app.application)
    created = create(server_api, template_id=str(version.template_id))

    details = assert_error(
        server_api.put(url(created["id"]), {"template_id": None}, format="json"),
        400,
        "validation_error",
    )

    assert "non_field_errors" in details
    assert Campaign.objects.get(pk=created["id"]).template_id == version.template_id


def test_put_may_swap_a_template_for_a_literal_title(server_api, app):
    version = template_create(app.application)
    created = create(server_api, template_id=str(version.template_id))

    response = server_api.put(
        url(created["id"]), {"template_id": None, "title": "Plain"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["template_id"], response.json()["title"]) == (None, "Plain")


def test_put_switching_content_form_drops_the_other(app, server_api):
    from templates_app.services import template_create

    version = template_create(
        application=app.application,
        name="switch",
        title_template="T {{ x }}",
        body_template="B",
        default_language="en",
    )
    created = server_api.post(
        "/api/v1/campaigns", {"name": "switch", "title": "literal", "body": "b"}, format="json"
    ).json()
    to_template = server_api.put(
        f"/api/v1/campaigns/{created['id']}",
        {"template_id": str(version.template_id), "variables": {"x": "1"}},
        format="json",
    ).json()
    assert to_template["template_id"] == str(version.template_id)
    assert (to_template["title"], to_template["body"], to_template["data"]) == ("", "", {})
    back = server_api.put(
        f"/api/v1/campaigns/{created['id']}", {"title": "literal again"}, format="json"
    ).json()
    assert back["template_id"] is None
    assert back["variables"] == {}
    assert back["title"] == "literal again"


def test_a_step_run_again_after_its_commit_hands_its_batch_over_again(
    server_api, app, settings, monkeypatch
):
    """A worker died after the step committed, before its batch and the next step reached the
    broker; Celery re-delivers the step, which finds the run already past it."""
    settings.CAMPAIGN_BATCH_SIZE = 2
    handed, published = [], []
    monkeypatch.setattr(dispatch, "enqueue", lambda queue, ids: handed.append((queue, ids)))
    monkeypatch.setattr(
        dispatch, "publish", lambda task, **kw: published.append((task, kw["args"]))
    )
    for _ in range(3):
        subscription_create(app.application)
    created = create(server_api)
    server_api.post(url(created["id"], "execute"))
    run = CampaignRun.objects.get(campaign_id=created["id"])
    published.clear()

    assert services.run_fanout_step(run_id=run.pk, step=0) is True
    first_batch = sorted(str(m.pk) for m in run_messages(run))
    published.clear()

    assert services.run_fanout_step(run_id=run.pk, step=0) is False

    assert [(queue, sorted(ids)) for queue, ids in handed] == [("campaigns", first_batch)]
    assert published == [("campaigns.fanout", [str(run.pk), 1])]
    assert run_messages(run).count() == 2  # nothing was created twice
