"""Campaigns end to end: real Celery workers fan out the audience and deliver it to the fake
providers; statistics, cancel, crash recovery and beat's schedule."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns import services as campaign_services
from campaigns.models import Campaign, CampaignRun
from core import crypto
from messaging import delivery
from messaging.models import Message, Subscription

from .conftest import Worker, wait_for

pytestmark = pytest.mark.e2e

STATS = ("pending", "successful", "failed", "received", "converted", "cancelled")


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def seed(app, count, *, start=0, tags=None, country="KR", enabled=True, kind=None, prefix="fcm"):
    """Bulk-inserts subscriptions (tokens encrypted and digested as the service does),
    alternating iOS and Android unless `kind` fixes the type; Android tokens start with
    `prefix` (see the fake FCM's prefixes). Returns their ids."""
    rows = []
    for i in range(start, start + count):
        type_ = kind or ("iOSPush" if i % 2 == 0 else "AndroidPush")
        token = f"{i:064x}" if type_ == "iOSPush" else f"{prefix}-{i}-" + "A" * 140
        rows.append(
            Subscription(
                application=app,
                type=type_,
                token=token,
                token_digest=crypto.token_digest(type_, token),
                tags=tags or {},
                country=country,
                enabled=enabled,
                last_active_at=timezone.now(),
            )
        )
    Subscription.objects.bulk_create(rows, batch_size=2000)
    return {s.pk for s in rows}


def real_stats(run: CampaignRun) -> dict[str, int]:
    counts = dict(
        Message.objects.filter(campaign_run_id=run.pk)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {name: counts.get(name, 0) for name in STATS}


def create_campaign(app, **body) -> dict:
    response = api(app.server_key).post("/api/v1/campaigns", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def campaign_status(campaign_id) -> str:
    return Campaign.objects.get(pk=campaign_id).status


def test_campaign_reaches_exactly_the_matching_subscriptions_once(live_app):
    matching = seed(live_app, 10_000, tags={"plan": "gold", "lang": "ko"})
    seed(live_app, 500, start=20_000, tags={"plan": "free"})  # wrong tag
    seed(live_app, 500, start=30_000, tags={"plan": "gold"}, country="JP")  # wrong country
    seed(live_app, 200, start=40_000, tags={"plan": "gold"}, enabled=False)  # disabled
    campaign = create_campaign(
        live_app,
        name="ten-thousand",
        title="Sale",
        body="Today only",
        targeting_criteria={"tags": {"plan": "gold"}, "countries": ["KR"]},
    )
    preview = api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/preview").json()
    assert preview["audience_size"] == 10_000
    assert preview["by_channel"] == {"iOSPush": 5_000, "AndroidPush": 5_000}

    response = api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/execute")
    assert response.status_code == 202
    assert response.json()["status"] == "running"
    wait_for(
        lambda: campaign_status(campaign["id"]) == "completed",
        timeout=240,
        what="the campaign to complete",
    )

    messages = Message.objects.filter(campaign_id=campaign["id"])
    assert messages.count() == 10_000
    assert set(messages.values_list("subscription_id", flat=True)) == matching
    run = CampaignRun.objects.get(campaign_id=campaign["id"])
    assert run.status == "completed"
    assert run.targeted == 10_000
    assert run.stats() == {"targeted": 10_000, **real_stats(run)}
    assert run.successful == 10_000
    detail = api(live_app.server_key).get(f"/api/v1/campaigns/{campaign['id']}").json()
    assert detail["stats"] == run.stats() | run.skips()
    assert detail["latest_run"]["progress"] == 1.0


def test_cancel_in_the_middle_leaves_no_message_pending(live_app):
    # Slow tokens (the fake FCM answers after 2 s) keep the first deliveries in flight while
    # the rest of the first 200 wait in the queue, and the throttle spaces the fan-out out
    # (200 every 10 s), so the cancel lands in the middle. Messages being sent finish; the
    # ones not yet sent become cancelled.
    seed(live_app, 3_000, kind="AndroidPush", tags={"slow": "yes"}, prefix="slow")
    campaign = create_campaign(
        live_app,
        name="to-cancel",
        title="x",
        throttle_per_minute=1200,
        targeting_criteria={"tags": {"slow": "yes"}},
    )
    api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/execute")
    run = wait_for(
        lambda: CampaignRun.objects.filter(campaign_id=campaign["id"], targeted__gt=0).first(),
        what="the first batch",
    )
    response = api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    wait_for(
        lambda: not Message.objects.filter(campaign_run_id=run.pk, status="pending").exists(),
        timeout=30,
        what="no message of the run left pending",
    )
    time.sleep(3)  # a fan-out step, had one survived the cancel, would have run by now
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert 0 < run.targeted < 3_000
    assert Message.objects.filter(campaign_run_id=run.pk).count() == run.targeted
    assert run.pending == 0
    assert run.stats() == {"targeted": run.targeted, **real_stats(run)}
    assert run.cancelled > 0
    again = api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/execute")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"


def test_worker_killed_during_fanout_resumes_without_duplicates(
    live_app, worker_env, celery_worker, tmp_path
):
    audience = seed(live_app, 6_000, tags={"plan": "gold"})
    campaign = create_campaign(
        live_app, name="crash", title="x", targeting_criteria={"tags": {"plan": "gold"}}
    )
    api(live_app.server_key).post(f"/api/v1/campaigns/{campaign['id']}/execute")
    wait_for(
        lambda: CampaignRun.objects.filter(
            campaign_id=campaign["id"], batches_done__gte=3
        ).exists(),
        what="a few fan-out batches",
    )
    celery_worker.kill()
    run = CampaignRun.objects.get(campaign_id=campaign["id"])
    assert not run.fanout_done, "the kill came too late to test anything"

    replacement = Worker(worker_env, tmp_path / "worker2.log", "e2e-fanout-restart").start()
    try:
        # Beat's watchdog and sweep find the stalled fan-out and the lost deliveries.
        def recovered():
            campaign_services.runs_resume_stalled()
            delivery.pending_sweep()
            return campaign_status(campaign["id"]) == "completed"

        wait_for(recovered, timeout=180, what="the campaign to complete after the crash")
    finally:
        replacement.stop()
        celery_worker.start()

    messages = Message.objects.filter(campaign_run_id=run.pk)
    assert messages.count() == 6_000
    assert messages.values("subscription_id").distinct().count() == 6_000
    assert set(messages.values_list("subscription_id", flat=True)) == audience
    run.refresh_from_db()
    assert run.stats() == {"targeted": 6_000, **real_stats(run)}
    assert run.successful == 6_000


def test_crontab_campaign_runs_on_beats_schedule(live_app):
    from django_celery_beat.schedulers import DatabaseScheduler

    from signal_project.celery import app as celery_app

    seed(live_app, 20, tags={"plan": "gold"})
    campaign = create_campaign(
        live_app,
        name="every-minute",
        title="Tick",
        targeting_criteria={"tags": {"plan": "gold"}},
        schedule={"crontab": "* * * * *", "timezone": "Asia/Seoul"},
    )
    assert campaign["status"] == "scheduled"
    task = Campaign.objects.get(pk=campaign["id"]).periodic_task
    assert str(task.crontab.timezone) == "Asia/Seoul"
    assert json.loads(task.args) == [campaign["id"], "crontab"]

    scheduler = DatabaseScheduler(app=celery_app)
    for number in (1, 2):
        entry = scheduler.schedule[task.name]
        entry.last_run_at = timezone.now() - timedelta(minutes=2)
        due, _next = entry.is_due()
        assert due, "a every-minute crontab last run two minutes ago is due"
        scheduler.apply_entry(entry, producer=scheduler.producer)  # what beat's tick does
        wait_for(
            lambda number=number: CampaignRun.objects.filter(
                campaign_id=campaign["id"], number=number, status="completed"
            ).exists(),
            timeout=60,
            what=f"scheduled run {number} to complete",
        )
        assert campaign_status(campaign["id"]) == "scheduled"  # waiting for the next one
        entry.last_run_at = timezone.now()
        assert not entry.is_due()[0]

    runs = list(CampaignRun.objects.filter(campaign_id=campaign["id"]).order_by("number"))
    assert [r.trigger for r in runs] == ["crontab", "crontab"]
    for run in runs:
        assert run.stats() == {"targeted": 20, **real_stats(run)}
        assert run.successful == 20
    listed = api(live_app.server_key).get(f"/api/v1/campaigns/{campaign['id']}/runs").json()
    assert [r["number"] for r in listed["results"]] == [2, 1]


def test_pause_holds_the_fan_out_and_resume_finishes_it_once_per_subscription(live_app):
    # The throttle spaces the fan-out out (200 every 2 s), so the pause lands in the middle.
    audience = seed(live_app, 2_000, tags={"pause": "yes"})
    campaign = create_campaign(
        live_app,
        name="to-pause",
        title="x",
        throttle_per_minute=6_000,
        targeting_criteria={"tags": {"pause": "yes"}},
    )
    server = api(live_app.server_key)
    server.post(f"/api/v1/campaigns/{campaign['id']}/execute")
    run = wait_for(
        lambda: CampaignRun.objects.filter(campaign_id=campaign["id"], targeted__gt=0).first(),
        what="the first batch",
    )

    response = server.post(f"/api/v1/campaigns/{campaign['id']}/pause")

    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    # A step that wrote its batch before the pause committed first; any later one rolls back.
    held = Message.objects.filter(campaign_id=campaign["id"]).count()
    assert 0 < held < 2_000
    # Messages already queued are still delivered while the run stays paused...
    wait_for(
        lambda: not Message.objects.filter(campaign_run_id=run.pk, status="pending").exists(),
        timeout=60,
        what="the queued messages of the paused run to be delivered",
    )
    # ...and no new batch starts, not even by the stall watchdog.
    assert campaign_services.runs_resume_stalled() == 0
    time.sleep(4)
    assert Message.objects.filter(campaign_id=campaign["id"]).count() == held
    run.refresh_from_db()
    assert (run.status, run.fanout_done, run.targeted, run.pending) == ("paused", False, held, 0)
    assert campaign_status(campaign["id"]) == "paused"

    response = server.post(f"/api/v1/campaigns/{campaign['id']}/resume")

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    wait_for(
        lambda: campaign_status(campaign["id"]) == "completed",
        timeout=120,
        what="the resumed campaign to complete",
    )
    messages = Message.objects.filter(campaign_run_id=run.pk)
    assert messages.count() == 2_000
    assert set(messages.values_list("subscription_id", flat=True)) == audience
    run.refresh_from_db()
    assert run.stats() == {"targeted": 2_000, **real_stats(run)}
    assert run.successful == 2_000
