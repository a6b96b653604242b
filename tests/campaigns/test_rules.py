"""Campaigns with a category and local-time delivery: the API's and the admin's fields, the
fan-out's per-target send_after, the run's waiting messages, and the skipped statistics."""

from __future__ import annotations

from datetime import UTC, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Category
from campaigns import selectors, services
from campaigns.local_time import next_local_time
from campaigns.models import Campaign, CampaignRun, RunStatus
from campaigns.schedules import schedule_clean
from messaging import delivery, dispatch
from messaging.models import FrequencyWindow, Message, Subscription, User
from tests.assertions import assert_error
from tests.conftest import subscription_create

from .conftest import campaign_create, fanout, messages_succeed, run_messages
from .test_admin import ADD_URL, form_data

pytestmark = pytest.mark.django_db

URL = "/api/v1/campaigns"


def category(application, key="offers", **fields) -> Category:
    return Category.objects.create(application=application, key=key, name=key.title(), **fields)


def post(client, **body):
    body = {"name": "sale", "title": "Sale", "body": "Half price", **body}
    return client.post(URL, body, format="json")


# --- The fields ----------------------------------------------------------------------------------


def test_category_and_local_time_are_written_read_and_changed(server_api, app):
    category(app.application)
    created = post(server_api, category="offers", delivery={"local_time": "09:30"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["category"], body["delivery"]) == ("offers", {"local_time": "09:30"})
    campaign = Campaign.objects.get(pk=body["id"])
    assert (campaign.category, campaign.delivery) == ("offers", {"local_time": "09:30"})

    fetched = server_api.get(f"{URL}/{body['id']}").json()
    assert (fetched["category"], fetched["delivery"]) == ("offers", {"local_time": "09:30"})

    changed = server_api.put(f"{URL}/{body['id']}", {"delivery": None}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["delivery"] == {} and changed.json()["category"] == "offers"
    changed = server_api.put(f"{URL}/{body['id']}", {"category": ""}, format="json")
    assert changed.json()["category"] == ""
    campaign.refresh_from_db()
    assert (campaign.category, campaign.delivery) == ("", {})


def test_an_unknown_category_is_a_validation_error_on_category(server_api, app, other_app):
    category(other_app.application)  # another application's key is unknown here
    response = post(server_api, category="offers")
    assert_error(response, 400, "validation_error")
    assert list(response.json()["error"]["details"]) == ["category"]
    assert not Campaign.objects.exists()

    category(app.application, key="news")
    created = post(server_api, category="news").json()
    response = server_api.put(f"{URL}/{created['id']}", {"category": "offers"}, format="json")
    assert_error(response, 400, "validation_error")
    assert "category" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "delivery",
    [{"local_time": "24:00"}, {"local_time": "9:00"}, {"local_time": 9}, {"at": "09:00"}, "09:00"],
)
def test_a_bad_delivery_is_a_validation_error_on_delivery(server_api, app, delivery):
    response = post(server_api, delivery=delivery)
    assert_error(response, 400, "validation_error")
    assert list(response.json()["error"]["details"]) == ["delivery"]


def test_the_admin_writes_category_and_local_time_and_refuses_bad_ones(admin_client, app):
    category(app.application)
    response = admin_client.post(
        ADD_URL, form_data(app.application, category="offers", local_time="08:15")
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert (campaign.category, campaign.delivery) == ("offers", {"local_time": "08:15"})
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.context["adminform"].form.initial["local_time"] == "08:15"

    for overrides, field in (
        ({"category": "gone"}, "category"),
        ({"local_time": "25:00"}, "local_time"),
    ):
        response = admin_client.post(ADD_URL, form_data(app.application, **overrides))
        assert response.status_code == 200
        assert field in response.context["adminform"].form.errors
    assert Campaign.objects.count() == 1


# --- Local-time delivery -------------------------------------------------------------------------


def test_each_target_waits_for_its_own_local_time_and_the_run_shows_them_waiting(
    server_api, app, monkeypatch
):
    handed = []
    monkeypatch.setattr(dispatch, "enqueue", lambda queue, ids, countdown=None: handed.extend(ids))
    zones = ["Asia/Seoul", "Europe/Berlin", "America/New_York", "", "Not/AZone"]
    members = {name: subscription_create(app.application, timezone=name) for name in zones[:4]}
    # A zone this host's tz database does not know (the device's may be newer).
    members["Not/AZone"] = subscription_create(app.application)
    Subscription.objects.filter(pk=members["Not/AZone"].pk).update(timezone="Not/AZone")
    # A recurring schedule in Tokyo time: the zone of the targets without one of their own.
    campaign = campaign_create(
        app.application,
        delivery={"local_time": "09:00"},
        schedule=schedule_clean({"crontab": "0 0 1 1 *", "timezone": "Asia/Tokyo"}),
    )
    run = services.campaign_execute(campaign=campaign, actor="test")

    fanout(run.pk)

    run.refresh_from_db()
    expected = {
        name: next_local_time(
            time(9, 0),
            ZoneInfo(name or "Asia/Tokyo") if name != "Not/AZone" else UTC,
            run.started_at,
        )
        for name in zones
    }
    got = {name: Message.objects.get(subscription=members[name]).send_after for name in zones}
    assert got == expected
    for name, moment in got.items():
        zone = ZoneInfo(name or "Asia/Tokyo") if name != "Not/AZone" else UTC
        assert moment.astimezone(zone).strftime("%H:%M") == "09:00"
        assert timezone.now() < moment <= timezone.now() + timedelta(days=1)
    assert not Message.objects.filter(enqueued_at__isnull=False).exists()
    assert (run.scheduled, run.pending, run.status) == (5, 5, RunStatus.RUNNING)
    assert selectors.run_waiting(run) == 5
    latest = server_api.get(f"{URL}/{campaign.pk}").json()["latest_run"]
    assert (latest["scheduled"], latest["waiting"], latest["status"]) == (5, 5, "running")

    # Their hour comes: the sweep hands them over; delivered, the run completes.
    Message.objects.update(send_after=timezone.now() - timedelta(seconds=1))
    assert selectors.run_waiting(run) == 0
    assert delivery.pending_sweep() == 5
    assert len(handed) == 5
    messages_succeed(list(run_messages(run)))
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED


@pytest.mark.parametrize(
    ("started_minutes_ago", "hour_minutes_ago", "waits"),
    [(10, 5, False), (30, 20, True), (10, 11, True)],
)
def test_a_target_reached_just_after_its_hour_goes_at_once_if_the_run_began_before_it(
    app, started_minutes_ago, hour_minutes_ago, waits
):
    # The run began before the hour: a target reached up to 15 minutes after it goes now.
    # Later than that, or an hour that passed before the run began, is tomorrow's.
    subscription_create(app.application, timezone="UTC")
    now = timezone.now()
    clock = (now - timedelta(minutes=hour_minutes_ago)).strftime("%H:%M")
    campaign = campaign_create(app.application, delivery={"local_time": clock})
    run = services.campaign_execute(campaign=campaign, actor="test")
    CampaignRun.objects.filter(pk=run.pk).update(
        started_at=now - timedelta(minutes=started_minutes_ago)
    )

    fanout(run.pk)

    message = Message.objects.get()
    assert message.send_after.strftime("%H:%M") == clock
    assert (message.send_after > now) is waits
    assert (message.enqueued_at is None) is waits


def test_a_campaign_without_local_time_reads_no_time_zone_and_waits_for_nothing(app):
    subscription_create(app.application, timezone="Asia/Seoul")
    run = services.campaign_execute(campaign=campaign_create(app.application), actor="test")

    with CaptureQueriesContext(connection) as queries:
        fanout(run.pk)

    assert not any('"timezone"' in query["sql"] for query in queries.captured_queries)
    run.refresh_from_db()
    assert run.scheduled == 0 and Message.objects.get().send_after is None
    with CaptureQueriesContext(connection) as queries:
        assert selectors.run_waiting(run) == 0
    assert not queries.captured_queries


def test_waiting_is_counted_up_to_its_bound(app, monkeypatch):
    monkeypatch.setattr(selectors, "WAITING_COUNT_MAX", 2)
    for _ in range(3):
        subscription_create(app.application)
    campaign = campaign_create(app.application, delivery={"local_time": "03:00"})
    run = services.campaign_execute(campaign=campaign, actor="test")
    fanout(run.pk)
    run.refresh_from_db()
    assert run.scheduled == 3
    assert selectors.run_waiting(run) == 2


# --- Skipped -------------------------------------------------------------------------------------


def test_stats_say_who_the_rules_left_out_summed_over_runs(server_api, admin_client, app):
    application = app.application
    category(application)
    application.frequency_cap = {"max": 1, "per_seconds": 3600}
    application.save(update_fields=["frequency_cap"])
    for user in ("keen", "opted-out", "capped"):
        subscription_create(application, external_user_id=user)
    User.objects.filter(external_user_id="opted-out").update(
        preferences={"categories": {"offers": {"enabled": False}}}
    )
    weekly = schedule_clean({"crontab": "0 9 * * 1", "timezone": "UTC"})
    campaign = campaign_create(application, category="offers", schedule=weekly)
    # "capped" had its one message of the hour already.
    capped = User.objects.get(external_user_id="capped")
    FrequencyWindow.objects.create(
        recipient=capped.pk, application=application, sent=[timezone.now()], granted=1
    )

    run = services.campaign_execute(campaign=campaign, actor="test")
    fanout(run.pk)
    messages_succeed(list(run_messages(run)))
    run.refresh_from_db()
    assert run.skips() == {"skipped": 2, "skipped_by_reason": {"opted_out": 1, "frequency_cap": 1}}
    assert run_messages(run).count() == 1
    # A second run of the recurring campaign: everyone left out (keen had its one message).
    second = services.campaign_execute(campaign=Campaign.objects.get(pk=campaign.pk), actor="t")
    fanout(second.pk)

    stats = server_api.get(f"{URL}/{campaign.pk}").json()["stats"]
    assert stats["skipped"] == 5
    assert stats["skipped_by_reason"] == {"opted_out": 2, "frequency_cap": 3}
    assert stats["targeted"] == 6
    latest = server_api.get(f"{URL}/{campaign.pk}").json()["latest_run"]
    assert latest["stats"]["skipped_by_reason"] == {"opted_out": 1, "frequency_cap": 2}

    page = admin_client.get(f"/admin/campaigns/campaignrun/{run.pk}/change/").content.decode()
    assert "skipped" in page and "opted out: 1, frequency cap: 1" in page
    campaign_page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert "opted out: 2, frequency cap: 3" in campaign_page.content.decode()
