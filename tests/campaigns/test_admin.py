"""The campaign managers' console in the admin: writing campaigns through the services, the
change page's preview, progress and runs, and the execute and cancel buttons and actions."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns import services
from campaigns.models import Campaign, CampaignRun, CampaignStatus, RunStatus
from campaigns.schedules import schedule_clean
from messaging.models import Message, MessageStatus
from messaging.services.messages import message_report_status
from messaging.signals import message_statuses_changed
from tests.admin_pages import page_data
from tests.conftest import fcm_token, subscription_create

from .conftest import (
    beat_rows,
    campaign_create,
    fanout,
    in_an_hour,
    messages_succeed,
    run_messages,
    template_create,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/campaigns/campaign/"
ADD_URL = CHANGELIST + "add/"
CONFIRM = {"confirm": "yes"}  # what the confirmation page posts


def change_url(campaign) -> str:
    return f"{CHANGELIST}{campaign.pk}/change/"


def form_data(application, **overrides) -> dict:
    data = {
        "application": str(application.pk),
        "name": "summer-sale",
        "template": "",
        "variables": "",
        "title": "Sale",
        "body": "Half price",
        "data": "{}",
        "tags": "",
        "last_active_after_0": "",
        "last_active_after_1": "",
        "scheduled_at_0": "",
        "scheduled_at_1": "",
        "schedule_preset": "",
        "cron_minute": "",
        "cron_hour": "",
        "cron_day_of_month": "",
        "cron_month_of_year": "",
        "cron_day_of_week": "",
        "schedule_timezone": "UTC",
        "throttle_per_minute": "",
        "priority": "normal",
        "ttl": "",
    }
    data.update(overrides)
    return data


def counts() -> tuple[int, ...]:
    return (Campaign.objects.count(), *beat_rows())


def notices(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


# --- Changelist --------------------------------------------------------------------------------


def test_the_changelist_shows_status_schedule_and_progress(admin_client, app, other_app):
    for _ in range(4):
        subscription_create(app.application)
    weekly = campaign_create(
        app.application,
        name="weekly-digest",
        schedule=schedule_clean({"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"}),
    )
    running = campaign_create(app.application, name="flash-sale")
    run = services.campaign_execute(campaign=running, actor="test")
    fanout(run.pk)
    messages_succeed(list(run_messages(run))[:1])
    campaign_create(other_app.application, name="other-apps-campaign")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "weekly-digest" in html and "flash-sale" in html and "other-apps-campaign" in html
    assert "cron 0 9 * * 1 (Asia/Seoul)" in html
    assert "running 25%" in html
    rows = {c.name: c for c in response.context["cl"].result_list}
    assert rows["weekly-digest"].status == CampaignStatus.SCHEDULED
    assert rows["flash-sale"].latest_run_status == RunStatus.RUNNING
    assert weekly.pk in {c.pk for c in rows.values()}


def test_the_changelist_filters_by_status_and_application_and_searches_names(
    admin_client, app, other_app
):
    draft = campaign_create(app.application, name="spring-sale")
    campaign_create(app.application, name="autumn-sale", scheduled_at=in_an_hour())
    foreign = campaign_create(other_app.application, name="spring-other")

    def names(**params) -> set[str]:
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200
        return {c.name for c in response.context["cl"].result_list}

    assert names(status__exact="draft") == {"spring-sale", "spring-other"}
    assert names(application__id__exact=str(app.application.pk)) == {"spring-sale", "autumn-sale"}
    assert names(q="spring") == {draft.name, foreign.name}


# --- Add ---------------------------------------------------------------------------------------


def test_the_add_page_loads(admin_client, app):
    response = admin_client.get(ADD_URL)

    assert response.status_code == 200
    html = response.content.decode()
    for name in ("tags", "user_tags", "countries", "languages", "channels", "last_active_after_0"):
        assert f'name="{name}"' in html, name
    for name in ("schedule_preset", "cron_minute", "cron_day_of_week", "schedule_timezone"):
        assert f'name="{name}"' in html, name
    assert 'value="KR">Korea (South)</option>' in html
    assert 'value="Email"' in html  # a channel's checkbox
    assert 'id="campaign-console"' not in html  # nothing to preview before it exists


def test_adding_a_recurring_campaign_goes_through_the_service_with_its_beat_task(admin_client, app):
    response = admin_client.post(
        ADD_URL,
        form_data(
            app.application,
            countries=["KR"],
            tags="plan=gold\n",
            schedule_preset="0 9 * * 1",  # the preset "Every Monday at 09:00"
            schedule_timezone="Asia/Seoul",
            throttle_per_minute="600",
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert (campaign.application_id, campaign.name, campaign.status) == (
        app.application.pk,
        "summer-sale",
        CampaignStatus.SCHEDULED,
    )
    assert campaign.targeting_criteria == {"countries": ["KR"], "tags": {"plan": "gold"}}
    assert campaign.throttle_per_minute == 600
    task = PeriodicTask.objects.select_related("crontab").get(pk=campaign.periodic_task_id)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "9", "1")
    assert str(task.crontab.timezone) == "Asia/Seoul"
    assert json.loads(task.args) == [str(campaign.pk), "crontab"]


def test_user_tags_are_a_field_of_the_audience_and_read_back(admin_client, app):
    response = admin_client.post(
        ADD_URL, form_data(app.application, user_tags="tier=vip\ncity=Seoul\n")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert campaign.targeting_criteria == {"user_tags": {"tier": "vip", "city": "Seoul"}}
    page = admin_client.get(change_url(campaign))
    form = page.context["adminform"].form
    assert sorted(form["user_tags"].value().splitlines()) == ["city=Seoul", "tier=vip"]


def test_adding_a_one_off_campaign_from_a_template_schedules_its_time(admin_client, app):
    version = template_create(app.application)
    when = (timezone.now() + timedelta(days=1)).replace(second=0, microsecond=0)

    response = admin_client.post(
        ADD_URL,
        form_data(
            app.application,
            template=str(version.template_id),
            variables="user_name=Kim",
            title="",
            body="",
            scheduled_at_0=when.strftime("%Y-%m-%d"),
            scheduled_at_1=when.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert (campaign.template_id, campaign.variables, campaign.scheduled_at) == (
        version.template_id,
        {"user_name": "Kim"},
        when,
    )
    assert campaign.status == CampaignStatus.SCHEDULED
    task = PeriodicTask.objects.select_related("clocked").get(pk=campaign.periodic_task_id)
    assert task.clocked.clocked_time == when


def test_adding_a_draft_creates_no_beat_task(admin_client, app):
    before = beat_rows()

    assert admin_client.post(ADD_URL, form_data(app.application)).status_code == 302

    assert Campaign.objects.get().status == CampaignStatus.DRAFT
    assert beat_rows() == before


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"tags": "plan: gold"}, "tags", "Line 1: not key=value"),
        ({"tags": "plan=gold\nplan=silver"}, "tags", "plan is given twice"),
        ({"countries": ["KOR"]}, "countries", "KOR"),
        ({"channels": ["Pigeon"]}, "channels", "Pigeon"),
        (
            {"last_active_after_0": "2026-13-01", "last_active_after_1": "09:00"},
            "last_active_after",
            "date",
        ),
        (
            {"schedule_preset": "custom", "cron_minute": "61", "cron_hour": "9"},
            "cron_minute",
            "crontab",
        ),
        ({"cron_hour": "25"}, "cron_hour", "crontab"),
        ({"cron_day_of_week": "1", "cron_month_of_year": "13"}, "cron_month_of_year", "crontab"),
        (
            {"schedule_preset": "0 9 * * 1", "schedule_timezone": "Mars/Olympus"},
            "schedule_timezone",
            "Mars/Olympus",
        ),
        ({"scheduled_at_0": "2020-01-01", "scheduled_at_1": "09:00:00"}, "scheduled_at", "future"),
        (
            {
                "scheduled_at_0": (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d"),
                "scheduled_at_1": "09:00:00",
                "schedule_preset": "0 9 * * 1",
            },
            "schedule_preset",
            "not both",
        ),
        ({"title": "", "body": ""}, "__all__", "needs a template"),
        (
            {
                "scheduled_at_0": (timezone.now() + timedelta(days=400)).strftime("%Y-%m-%d"),
                "scheduled_at_1": "09:00:00",
            },
            "scheduled_at",
            "At most 365 days ahead",
        ),
        ({"data": json.dumps({"k": "v" * 70_000})}, "data", "bytes"),
        ({"throttle_per_minute": "0"}, "throttle_per_minute", "1"),
        ({"variables": "[1, 2]"}, "variables", "Line 1: not name=value"),
        ({"variables": "user:={1"}, "variables", "user:= is not JSON"),
        ({"countries": ["ZZ"]}, "countries", "ZZ"),
        ({"data": '{"screen": "a\\u0000"}'}, "data", "Null characters"),
        ({"variables": 'name:="\\ud800"'}, "variables", "Unpaired surrogate"),
        ({"tags": "plan=\x00"}, "tags", "Null"),
        ({"body": "Half\x00price"}, "body", "Null characters"),
    ],
)
def test_an_invalid_campaign_shows_form_errors_and_creates_nothing(
    admin_client, app, overrides, field, text
):
    before = counts()

    response = admin_client.post(ADD_URL, form_data(app.application, **overrides))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert any(text in message for message in errors[field]), errors
    assert 'class="errornote"' in response.content.decode()
    assert counts() == before


def test_a_template_of_another_application_is_refused(admin_client, app, other_app):
    foreign = template_create(other_app.application)

    response = admin_client.post(
        ADD_URL, form_data(app.application, template=str(foreign.template_id), title="", body="")
    )

    assert response.status_code == 200
    assert "template" in response.context["adminform"].form.errors
    assert Campaign.objects.count() == 0


# --- Change page -------------------------------------------------------------------------------


def test_the_change_page_previews_the_audience_and_shows_runs_and_stats(admin_client, app):
    version = template_create(app.application)
    for _ in range(3):
        subscription_create(app.application, language="en", tags={"plan": "gold"})
    subscription_create(
        app.application, type="AndroidPush", token=fcm_token(), language="ko", tags={"plan": "gold"}
    )
    subscription_create(app.application, tags={"plan": "silver"})
    campaign = campaign_create(
        app.application,
        template=version.template,
        variables={"user_name": "<Kim>"},
        targeting_criteria={"tags": {"plan": "gold"}},
        schedule=schedule_clean({"crontab": "0 9 * * *"}),
    )
    run = services.campaign_execute(campaign=campaign, actor="test")
    fanout(run.pk)
    messages_succeed(list(run_messages(run))[:2])

    response = admin_client.get(change_url(campaign))

    assert response.status_code == 200
    context = response.context
    assert context["preview"]["audience_size"] == 4
    assert context["preview"]["by_channel"] == {"iOSPush": 3, "AndroidPush": 1}
    assert len(context["preview"]["sample"]) == 3
    assert context["latest"]["progress"] == 0.5
    assert context["latest"]["stats"]["successful"] == 2
    html = response.content.decode()
    assert '<strong id="campaign-audience-size">4</strong>' in html
    assert "iOSPush: 3" in html and "AndroidPush: 1" in html
    assert "Hello &lt;Kim&gt;" in html  # rendered, escaped, in the subscriber's language
    assert "event_id, event_name" in html  # the missing variables
    assert '<progress value="0.5000" max="1">' in html
    assert "50% done" in html
    assert html.count('class="campaign-run"') == 1
    assert '<meta http-equiv="refresh" content="5">' in html  # running: it refreshes
    assert "<script src=" not in html.split('id="campaign-console"')[1]  # no external JS


def test_the_run_history_lists_every_run_with_its_stats(admin_client, app):
    subscription_create(app.application)
    campaign = campaign_create(app.application, schedule=schedule_clean({"crontab": "0 9 * * *"}))
    for _ in range(2):
        run = services.campaign_execute(campaign=campaign, actor="test")
        fanout(run.pk)
        messages_succeed(run_messages(run))

    response = admin_client.get(change_url(campaign))

    history = response.context["history"]
    assert [row["run"].number for row in history] == [2, 1]
    assert [row["run"].status for row in history] == [RunStatus.COMPLETED] * 2
    assert [row["stats"]["successful"] for row in history] == [1, 1]
    assert response.context["totals"]["targeted"] == 2
    html = response.content.decode()
    assert html.count('class="campaign-run"') == 2
    assert "<meta http-equiv" not in html  # scheduled, not running: no refresh


def test_a_draft_is_edited_through_the_service(admin_client, app):
    campaign = campaign_create(app.application)

    response = admin_client.post(
        change_url(campaign),
        form_data(
            app.application,
            name="renamed",
            schedule_preset="custom",
            cron_minute="30",
            cron_hour="7",
            schedule_timezone="Europe/Paris",
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("renamed", CampaignStatus.SCHEDULED)
    task = PeriodicTask.objects.select_related("crontab").get(pk=campaign.periodic_task_id)
    assert (task.crontab.hour, str(task.crontab.timezone)) == ("7", "Europe/Paris")


def test_clearing_the_schedule_in_the_form_returns_to_draft(admin_client, app):
    campaign = campaign_create(app.application, schedule=schedule_clean({"crontab": "0 9 * * *"}))
    task_id = campaign.periodic_task_id

    response = admin_client.post(change_url(campaign), form_data(app.application))

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert (campaign.status, campaign.periodic_task_id) == (CampaignStatus.DRAFT, None)
    assert not PeriodicTask.objects.filter(pk=task_id).exists()


def test_a_running_campaign_is_read_only(admin_client, app):
    campaign = campaign_create(app.application)
    services.campaign_execute(campaign=campaign, actor="test")

    page = admin_client.get(change_url(campaign))
    post = admin_client.post(change_url(campaign), form_data(app.application, name="late"))

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "A running campaign is read-only" in page.content.decode()
    assert post.status_code == 403
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("summer-sale", CampaignStatus.RUNNING)


# --- Buttons ---------------------------------------------------------------------------------


def test_the_execute_button_starts_a_run(admin_client, app):
    subscription_create(app.application)
    campaign = campaign_create(app.application)
    page = admin_client.get(change_url(campaign)).content.decode()
    assert f'action="{CHANGELIST}{campaign.pk}/execute/"' in page
    assert "csrfmiddlewaretoken" in page.split('id="campaign-execute"')[1].split("</form>")[0]

    response = admin_client.post(f"{CHANGELIST}{campaign.pk}/execute/", CONFIRM)

    assert response.status_code == 302
    assert response["Location"] == change_url(campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.status, run.trigger, run.number) == (RunStatus.RUNNING, "execute", 1)
    assert notices(response) == [("success", "summer-sale: run 1 started.")]


def test_the_cancel_button_cancels(admin_client, app):
    campaign = campaign_create(app.application, scheduled_at=in_an_hour())

    response = admin_client.post(f"{CHANGELIST}{campaign.pk}/cancel/", CONFIRM)

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is False
    assert notices(response)[0][0] == "success"


def test_executing_a_completed_campaign_shows_an_error_not_a_500(admin_client, app):
    campaign = campaign_create(app.application)  # nobody to send to: completes at once
    fanout(services.campaign_execute(campaign=campaign, actor="test").pk)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED

    response = admin_client.post(f"{CHANGELIST}{campaign.pk}/execute/", CONFIRM, follow=True)

    assert response.status_code == 200
    html = response.content.decode()
    assert "A completed campaign cannot be executed." in html
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1
    assert 'id="campaign-execute"' not in html  # no button for what cannot be done


def test_cancelling_a_cancelled_campaign_shows_an_error(admin_client, app):
    campaign = campaign_create(app.application)
    services.campaign_cancel(campaign=campaign, actor="test")

    response = admin_client.post(f"{CHANGELIST}{campaign.pk}/cancel/", CONFIRM)

    assert notices(response) == [
        ("error", "summer-sale: A cancelled campaign cannot be cancelled.")
    ]


def confirmation_of(response) -> str:
    """The consequences and the form of a confirmation page (its HTML)."""
    assert response.status_code == 200, response.content[:300]
    html = response.content.decode()
    return html.split('id="confirmation"')[1]


@pytest.mark.parametrize("button", ["execute", "cancel"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_button_asks_for_confirmation_and_changes_nothing_until_then(
    admin_client, app, button, method
):
    for _ in range(3):
        subscription_create(app.application)
    subscription_create(app.application, type="AndroidPush", token=fcm_token(1))
    campaign = campaign_create(app.application, scheduled_at=in_an_hour())
    url = f"{CHANGELIST}{campaign.pk}/{button}/"

    page = confirmation_of(getattr(admin_client, method)(url))

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert not CampaignRun.objects.exists()
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is True
    assert "summer-sale" in page
    if button == "execute":
        assert "about 4 subscriptions (AndroidPush: 1, iOSPush: 3)" in page
    else:
        assert "becomes cancelled and is never run again by its schedule" in page
    # The page posts the confirmation back to the same URL.
    form = page.split("<form")[1].split("</form>")[0]
    assert f'action="{url}"' in form
    assert 'name="confirm" value="yes"' in form and "csrfmiddlewaretoken" in form


def test_the_cancel_confirmation_counts_the_unsent_messages_of_a_running_campaign(
    admin_client, app
):
    for _ in range(2):
        subscription_create(app.application)
    campaign = campaign_create(app.application)
    fanout(services.campaign_execute(campaign=campaign, actor="test").pk)

    page = confirmation_of(admin_client.post(f"{CHANGELIST}{campaign.pk}/cancel/"))

    assert "Its 2 message(s) not yet sent are cancelled" in page
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING


@pytest.mark.parametrize("action", ["execute_selected", "cancel_selected"])
def test_the_changelist_actions_ask_for_confirmation_first(admin_client, app, action):
    first = campaign_create(app.application, name="first-one")
    second = campaign_create(app.application, name="second-one")
    selected = [str(first.pk), str(second.pk)]

    response = admin_client.post(CHANGELIST, {"action": action, "_selected_action": selected})

    page = confirmation_of(response)
    assert set(Campaign.objects.values_list("status", flat=True)) == {CampaignStatus.DRAFT}
    assert not CampaignRun.objects.exists()
    assert "first-one" in page and "second-one" in page
    for pk in selected:
        assert f'name="_selected_action" value="{pk}"' in page
    assert f'name="action" value="{action}"' in page

    # What the page's button posts.
    admin_client.post(CHANGELIST, {"action": action, "_selected_action": selected, **CONFIRM})

    expected = CampaignStatus.RUNNING if action == "execute_selected" else CampaignStatus.CANCELLED
    assert set(Campaign.objects.values_list("status", flat=True)) == {expected}


def test_the_buttons_need_a_staff_login(client, app):
    campaign = campaign_create(app.application)

    response = client.post(f"{CHANGELIST}{campaign.pk}/execute/", CONFIRM)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


# --- Changelist actions ------------------------------------------------------------------------


def test_execute_selected_reports_each_refusal(admin_client, app):
    draft = campaign_create(app.application, name="draft-one")
    cancelled = campaign_create(app.application, name="cancelled-one")
    services.campaign_cancel(campaign=cancelled, actor="test")

    response = admin_client.post(
        CHANGELIST,
        {
            "action": "execute_selected",
            "_selected_action": [str(draft.pk), str(cancelled.pk)],
            **CONFIRM,
        },
    )

    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.RUNNING
    assert not CampaignRun.objects.filter(campaign=cancelled).exists()
    assert sorted(notices(response)) == [
        ("error", "cancelled-one: A cancelled campaign cannot be executed."),
        ("success", "Executed 1 campaign(s)."),
    ]


def test_cancel_selected_cancels_through_the_service(admin_client, app):
    scheduled = campaign_create(app.application, name="a", scheduled_at=in_an_hour())
    running = campaign_create(app.application, name="b")
    run = services.campaign_execute(campaign=running, actor="test")

    response = admin_client.post(
        CHANGELIST,
        {
            "action": "cancel_selected",
            "_selected_action": [str(scheduled.pk), str(running.pk)],
            **CONFIRM,
        },
    )

    assert response.status_code == 302
    assert set(Campaign.objects.values_list("status", flat=True)) == {CampaignStatus.CANCELLED}
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert PeriodicTask.objects.get(pk=scheduled.periodic_task_id).enabled is False
    assert notices(response) == [("success", "Cancelled 2 campaign(s).")]


# --- Runs --------------------------------------------------------------------------------------


def test_runs_are_listed_read_only_with_a_status_filter(admin_client, app):
    first = campaign_create(app.application, name="first")
    second = campaign_create(app.application, name="second")
    fanout(services.campaign_execute(campaign=first, actor="test").pk)  # empty audience: completed
    services.campaign_execute(campaign=second, actor="test")

    everything = admin_client.get("/admin/campaigns/campaignrun/")
    running = admin_client.get("/admin/campaigns/campaignrun/", {"status__exact": "running"})
    run = CampaignRun.objects.get(campaign=second)
    detail = admin_client.get(f"/admin/campaigns/campaignrun/{run.pk}/change/")

    assert everything.status_code == 200
    assert len(everything.context["cl"].result_list) == 2
    assert [r.campaign.name for r in running.context["cl"].result_list] == ["second"]
    assert admin_client.get("/admin/campaigns/campaignrun/add/").status_code == 403
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()


# --- Channel parts ------------------------------------------------------------------------------

PARTS = {"email": {"subject": "Summer sale", "from_name": "Shop"}, "sms": {"text": "Sale!"}}


def test_the_admin_writes_a_campaigns_parts_and_a_save_without_one_removes_it(admin_client, app):
    response = admin_client.post(ADD_URL, form_data(app.application, parts=json.dumps(PARTS)))
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert campaign.parts == PARTS

    response = admin_client.post(
        change_url(campaign), form_data(app.application, parts=json.dumps({"sms": {"text": "x"}}))
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert campaign.parts == {"sms": {"text": "x"}}


def test_the_change_page_shows_what_each_channel_sends(admin_client, app):
    subscription_create(app.application, type="SMS", token="+821012345678")
    campaign = campaign_create(app.application, parts={"sms": {"text": "<Sale>"}})

    response = admin_client.get(change_url(campaign))

    [item] = response.context["preview"]["sample"]
    assert item["channel_content"] == {"text": "<Sale>", "encoding": "GSM-7", "segments": 1}
    html = response.content.decode()
    assert "&lt;Sale&gt;" in html.split('class="sample-channel-content"')[1]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"parts": json.dumps({"email": {"subject": "a\nb"}})}, "email.subject must be one line"),
        ({"parts": json.dumps({"sms": {"text": "a" * 1531}})}, "11 segments"),
        ({"parts": json.dumps({"web_push": {"url": "ftp://x"}})}, "absolute http(s) URL"),
        ({"parts": json.dumps(["email"])}, "A JSON object."),
    ],
)
def test_the_admin_refuses_bad_parts(admin_client, app, overrides, fragment):
    response = admin_client.post(ADD_URL, form_data(app.application, **overrides))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(fragment in message for message in errors["parts"]), errors
    assert not Campaign.objects.exists()


def test_the_admin_refuses_parts_with_a_template(admin_client, app):
    version = template_create(app.application)

    response = admin_client.post(
        ADD_URL,
        form_data(
            app.application,
            template=str(version.template.pk),
            title="",
            body="",
            parts=json.dumps({"sms": {"text": "x"}}),
        ),
    )

    assert response.status_code == 200
    assert "not both" in response.context["adminform"].form.errors["parts"][0]


def test_content_the_template_renders_over_the_limits_is_a_form_error(admin_client, app):
    version = template_create(app.application)

    response = admin_client.post(
        ADD_URL,
        form_data(
            app.application,
            template=str(version.template.pk),
            title="",
            body="",
            variables="user_name=" + "x" * 1000,
        ),
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["template"]
    assert "the limit is 1000" in error
    assert not Campaign.objects.exists()


# --- The funnel ---------------------------------------------------------------------------------


def messages_fail(messages, code: str) -> None:
    """What delivery does for a refused message: pending -> failed with the provider's code."""
    transitions: Counter = Counter()
    for message in messages:
        message.fail()
        message.error_code = code
        message.save(update_fields=["status", "error_code"])
        transitions[(message.campaign_run_id, MessageStatus.PENDING, MessageStatus.FAILED)] += 1
    message_statuses_changed.send(sender=Message, transitions=transitions)


def funnel_of(html: str, table: str) -> dict[str, str]:
    """{stage: count} of a funnel table on the page."""
    part = html.split(f'id="{table}"')[1].split("</table>")[0]
    return dict(re.findall(r'data-stage="(\w+)">(\d+)<', part))


def test_a_completed_campaign_shows_delivered_as_every_message_the_providers_took(
    admin_client, app
):
    subscription_create(app.application, type="Email", token="kim@example.com")
    subscription_create(app.application, type="SMS", token="+821012345678")
    campaign = campaign_create(app.application)
    run = services.campaign_execute(campaign=campaign, actor="test")
    fanout(run.pk)
    email, sms = sorted(run_messages(run), key=lambda m: m.channel)
    messages_succeed([email, sms])
    message_report_status(message=sms, status=MessageStatus.RECEIVED, actor="test")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED

    response = admin_client.get(change_url(campaign))

    html = response.content.decode()
    # The buckets are successful 1, received 1: the funnel counts the received SMS as
    # delivered too.
    expected = {"targeted": "2", "delivered": "2", "failed": "0", "received": "1"}
    assert funnel_of(html, "campaign-funnel").items() >= expected.items()
    assert funnel_of(html, "campaign-latest-funnel").items() >= expected.items()
    assert response.context["funnel"]["received_rate"] == 0.5
    assert "100.0%" in html.split('id="campaign-funnel"')[1]  # delivered of targeted
    assert "50.0%" in html.split('id="campaign-funnel"')[1]  # received of delivered
    row = html.split('class="campaign-run"')[1].split("</tr>")[0]
    # targeted, delivered, failed, received, converted, pending, cancelled, skipped
    assert re.findall(r'class="num">(\d+)<', row) == ["2", "2", "0", "1", "0", "0", "0", "0"]


def test_the_funnel_counts_the_failures_by_error_code(admin_client, app):
    for _ in range(4):
        subscription_create(app.application)
    campaign = campaign_create(app.application)
    run = services.campaign_execute(campaign=campaign, actor="test")
    fanout(run.pk)
    first, second, third, fourth = run_messages(run)
    messages_fail([first, second], "Unregistered")
    messages_fail([third], "<BadDeviceToken>")
    messages_succeed([fourth])

    campaign_page = admin_client.get(change_url(campaign)).content.decode()
    run_page = admin_client.get(f"/admin/campaigns/campaignrun/{run.pk}/change/").content.decode()

    for html, table in ((campaign_page, "campaign-funnel"), (run_page, "run-funnel")):
        assert funnel_of(html, table).items() >= {"delivered": "1", "failed": "3"}.items()
        part = html.split(f'id="{table}"')[1].split("</table>")[0]
        assert re.findall(
            r'class="failure-code">([^<]+)</code>: <span class="failure-count">(\d+)', part
        ) == [
            ("Unregistered", "2"),
            ("&lt;BadDeviceToken&gt;", "1"),
        ]


def test_campaign_run_and_message_pages_link_to_each_other(admin_client, app):
    subscription_create(app.application)
    campaign = campaign_create(app.application)
    run = services.campaign_execute(campaign=campaign, actor="test")
    fanout(run.pk)
    [message] = run_messages(run)

    campaign_page = admin_client.get(change_url(campaign)).content.decode()
    run_url = f"/admin/campaigns/campaignrun/{run.pk}/change/"
    run_page = admin_client.get(run_url).content.decode()
    message_page = admin_client.get(f"/admin/messaging/message/{message.pk}/change/")
    runs = admin_client.get(f"/admin/campaigns/campaignrun/?campaign__id__exact={campaign.pk}")
    of_run = admin_client.get(f"/admin/messaging/message/?campaign_run_id={run.pk}")

    assert f'href="{run_url}"' in campaign_page
    assert f"/admin/messaging/message/?campaign_run_id={run.pk}" in campaign_page
    assert f"/admin/messaging/message/?campaign_id={campaign.pk}" in campaign_page
    assert f"/admin/campaigns/campaignrun/?campaign__id__exact={campaign.pk}" in campaign_page
    assert f'href="{change_url(campaign)}"' in run_page
    assert f"/admin/messaging/message/?campaign_run_id={run.pk}" in run_page
    assert [r.pk for r in runs.context["cl"].result_list] == [run.pk]
    assert [m.pk for m in of_run.context["cl"].result_list] == [message.pk]
    html = message_page.content.decode()
    assert f'href="{change_url(campaign)}"' in html
    assert f'href="{run_url}"' in html
    assert f'href="/admin/messaging/subscription/{message.subscription_id}/change/"' in html


# --- The form's fields and the JSON they store ---------------------------------------------


def test_the_change_page_fills_the_fields_from_the_stored_json_and_saving_keeps_it(
    admin_client, app
):
    criteria = {
        "tags": {"plan": "gold", "city": "Seoul"},
        "countries": ["KR", "US"],
        "languages": ["ko", "en"],
        "channels": ["Email", "SMS"],
        "last_active_after": "2026-10-01T00:00:00+00:00",
    }
    version = template_create(app.application)
    campaign = campaign_create(
        app.application,
        template=version.template,
        targeting_criteria=criteria,
        variables={"user_name": "Kim", "user": {"tier": 2}},
        schedule=schedule_clean({"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"}),
    )
    page = admin_client.get(change_url(campaign))
    form = page.context["adminform"].form
    assert sorted(form["tags"].value().splitlines()) == ["city=Seoul", "plan=gold"]
    assert form["countries"].value() == ["KR", "US"]
    assert form["schedule_preset"].value() == "0 9 * * 1"
    assert form["schedule_timezone"].value() == "Asia/Seoul"
    assert sorted(form["variables"].value().splitlines()) == ['user:={"tier": 2}', "user_name=Kim"]
    html = page.content.decode()
    assert 'id="campaign-criteria-json"' in html and "&quot;plan&quot;: &quot;gold&quot;" in html
    assert "At 09:00 AM, only on Monday (Asia/Seoul)" in html
    # The template's variables, named beside the field.
    assert "The template uses: event_id, event_name, user_name." in html
    assert html.count("09:00 KST (Mon)") == 3  # the next runs, in the campaign's zone

    data = page_data(page)
    moment = data.pop("last_active_after")  # its widget posts a date and a time
    data |= {
        "last_active_after_0": f"{moment:%Y-%m-%d}",
        "last_active_after_1": f"{moment:%H:%M:%S}",
    }
    response = admin_client.post(change_url(campaign), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert campaign.targeting_criteria == criteria
    assert campaign.variables == {"user_name": "Kim", "user": {"tier": 2}}
    assert campaign.schedule == {"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"}


def test_custom_crontab_fields_and_a_time_zone_make_the_schedule(admin_client, app):
    response = admin_client.post(
        ADD_URL,
        form_data(
            app.application,
            schedule_preset="custom",
            cron_minute="*/30",
            cron_hour="8-18",
            cron_day_of_week="1-5",
            schedule_timezone="America/New_York",
            last_active_after_0="2026-10-01",
            last_active_after_1="12:00:00",
            languages=["ko", "en"],
            channels=["AndroidPush"],
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert campaign.schedule == {"crontab": "*/30 8-18 * * 1-5", "timezone": "America/New_York"}
    assert campaign.targeting_criteria == {
        "last_active_after": "2026-10-01T12:00:00+00:00",
        "languages": ["ko", "en"],
        "channels": ["AndroidPush"],
    }


def test_a_finished_campaign_shows_its_audience_and_variables_read_only(admin_client, app):
    version = template_create(app.application)
    campaign = campaign_create(
        app.application,
        template=version.template,
        variables={"user_name": "<Kim>"},
        targeting_criteria={"tags": {"plan": "gold"}, "countries": ["KR"]},
    )
    fanout(
        services.campaign_execute(campaign=campaign, actor="test").pk
    )  # nobody: completes at once

    response = admin_client.get(change_url(campaign))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>tags</strong>: plan=gold" in html
    assert "<strong>countries</strong>: KR" in html
    assert "user_name=&lt;Kim&gt;" in html
    assert 'name="tags"' not in html


def test_times_carry_their_zone(admin_client, app):
    campaign = campaign_create(app.application)

    html = admin_client.get(CHANGELIST).content.decode()

    assert f"{campaign.created_at:%Y-%m-%d %H:%M:%S} UTC" in html
