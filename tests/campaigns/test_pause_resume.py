"""Pausing and resuming a campaign: POST /campaigns/{id}/pause and /resume, what the fan-out,
the watchdogs and completion do with a paused run, cancel from paused, and the admin's
actions. The fan-out steps run in-process, as a worker would run them."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connections, transaction
from django.utils import timezone

from campaigns import services, tasks
from campaigns.models import Campaign, CampaignRun, CampaignStatus, RunStatus
from messaging import dispatch
from messaging.models import Message, MessageStatus
from tests.assertions import assert_error
from tests.conftest import subscription_create

from .conftest import campaign_create, fanout, messages_succeed, run_messages

pytestmark = pytest.mark.django_db

URL = "/api/v1/campaigns"


def url(campaign_id, action: str) -> str:
    return f"{URL}/{campaign_id}/{action}"


@pytest.fixture
def audience(app, settings):
    """Seven subscriptions, read in batches of two."""
    settings.CAMPAIGN_BATCH_SIZE = 2
    return [subscription_create(app.application) for _ in range(7)]


def started(app) -> tuple[Campaign, CampaignRun]:
    campaign = campaign_create(app.application)
    run = services.campaign_execute(campaign=campaign, actor="test")
    return campaign, run


def step(run: CampaignRun) -> bool:
    """The step the run is at, as the enqueued task would run it."""
    run.refresh_from_db()
    return services.run_fanout_step(run_id=run.pk, step=run.batches_done)


def state(campaign: Campaign, run: CampaignRun) -> tuple[str, str]:
    campaign.refresh_from_db()
    run.refresh_from_db()
    return campaign.status, run.status


def test_pause_mid_fan_out_then_resume_sends_one_message_per_subscription(
    server_api, app, audience, django_capture_on_commit_callbacks
):
    campaign, run = started(app)
    assert step(run) is True  # the first batch: two messages

    response = server_api.post(url(campaign.pk, "pause"))

    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    assert state(campaign, run) == (CampaignStatus.PAUSED, RunStatus.PAUSED)
    # The next step, already enqueued, starts no batch and enqueues none.
    with django_capture_on_commit_callbacks() as enqueued:
        assert step(run) is False
    assert enqueued == []
    assert run_messages(run).count() == 2
    run.refresh_from_db()
    assert (run.batches_done, run.fanout_done, run.targeted) == (1, False, 2)

    # Messages already queued still go, and their counters move; the run does not complete.
    messages_succeed(run_messages(run))
    assert state(campaign, run) == (CampaignStatus.PAUSED, RunStatus.PAUSED)
    run.refresh_from_db()
    assert (run.pending, run.successful) == (0, 2)

    with django_capture_on_commit_callbacks() as enqueued:
        response = server_api.post(url(campaign.pk, "resume"))

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert len(enqueued) == 1  # the fan-out step the run is at
    assert state(campaign, run) == (CampaignStatus.RUNNING, RunStatus.RUNNING)
    fanout(run.pk)
    messages = list(run_messages(run))
    assert sorted(m.subscription_id for m in messages) == sorted(s.pk for s in audience)
    run.refresh_from_db()
    assert (run.targeted, run.pending, run.successful, run.fanout_done) == (7, 5, 2, True)

    messages_succeed([m for m in messages if m.status == MessageStatus.PENDING])

    assert state(campaign, run) == (CampaignStatus.COMPLETED, RunStatus.COMPLETED)
    stats = server_api.get(f"{URL}/{campaign.pk}").json()["stats"]
    assert (stats["targeted"], stats["successful"], stats["pending"]) == (7, 7, 0)


@pytest.mark.django_db(transaction=True)
def test_a_pause_while_a_step_writes_its_batch_rolls_the_batch_back(app, audience, monkeypatch):
    """The pause commits between the step's read of the run and its compare-and-set: the
    step's messages roll back with it, and the resumed run writes them once."""
    campaign, run = started(app)
    real_send = services.message_send

    def pause_then_send(**kwargs):
        def pause() -> None:
            try:
                services.campaign_pause(campaign=campaign, actor="operator")
            finally:
                connections.close_all()

        operator = threading.Thread(target=pause)
        operator.start()
        operator.join(10)
        return real_send(**kwargs)

    monkeypatch.setattr(services, "message_send", pause_then_send)
    assert services.run_fanout_step(run_id=run.pk, step=0) is False
    monkeypatch.setattr(services, "message_send", real_send)

    assert state(campaign, run) == (CampaignStatus.PAUSED, RunStatus.PAUSED)
    assert run_messages(run).count() == 0
    run.refresh_from_db()
    assert (run.batches_done, run.targeted, run.cursor) == (0, 0, None)

    services.campaign_resume(campaign=campaign, actor="operator")
    fanout(run.pk)

    assert sorted(m.subscription_id for m in run_messages(run)) == sorted(s.pk for s in audience)


def test_the_watchdogs_leave_a_paused_run_alone(app, audience, django_capture_on_commit_callbacks):
    campaign, run = started(app)
    step(run)
    services.campaign_pause(campaign=campaign, actor="operator")
    later = timezone.now() + timedelta(days=1)

    assert services.runs_resume_stalled(now=later) == 0
    assert services.runs_resume_after_broker_loss() == 0
    assert state(campaign, run) == (CampaignStatus.PAUSED, RunStatus.PAUSED)


def test_a_paused_run_whose_fan_out_had_finished_completes_on_resume(server_api, app, audience):
    campaign, run = started(app)
    fanout(run.pk)
    services.campaign_pause(campaign=campaign, actor="operator")
    messages_succeed(run_messages(run))
    assert state(campaign, run) == (CampaignStatus.PAUSED, RunStatus.PAUSED)

    response = server_api.post(url(campaign.pk, "resume"))

    assert response.status_code == 202
    assert response.json()["status"] == "completed"
    assert state(campaign, run) == (CampaignStatus.COMPLETED, RunStatus.COMPLETED)


@pytest.mark.parametrize(
    ("action", "make", "status"),
    [
        ("pause", "draft", "draft"),
        ("pause", "scheduled", "scheduled"),
        ("pause", "paused", "paused"),
        ("pause", "cancelled", "cancelled"),
        ("resume", "draft", "draft"),
        ("resume", "running", "running"),
        ("resume", "cancelled", "cancelled"),
    ],
)
def test_pause_and_resume_in_the_wrong_state_are_invalid_transitions(
    server_api, app, action, make, status
):
    scheduled_at = timezone.now() + timedelta(hours=1) if make == "scheduled" else None
    campaign = campaign_create(app.application, scheduled_at=scheduled_at)
    if make in ("running", "paused"):
        services.campaign_execute(campaign=campaign, actor="test")
    if make == "paused":
        services.campaign_pause(campaign=campaign, actor="test")
    if make == "cancelled":
        services.campaign_cancel(campaign=campaign, actor="test")
    runs = list(CampaignRun.objects.values_list("pk", "status"))

    details = assert_error(server_api.post(url(campaign.pk, action)), 409, "invalid_transition")

    assert details == {"status": status}
    campaign.refresh_from_db()
    assert campaign.status == status
    assert list(CampaignRun.objects.values_list("pk", "status")) == runs


def test_a_completed_campaign_cannot_be_paused(server_api, app):
    campaign, run = started(app)  # nobody matches: the run completes at its first step
    fanout(run.pk)

    assert_error(server_api.post(url(campaign.pk, "pause")), 409, "invalid_transition")
    assert state(campaign, run) == (CampaignStatus.COMPLETED, RunStatus.COMPLETED)


def test_a_paused_campaign_is_cancelled_with_its_pending_messages(
    server_api, app, audience, django_capture_on_commit_callbacks
):
    campaign, run = started(app)
    step(run)
    step(run)
    services.campaign_pause(campaign=campaign, actor="operator")
    messages_succeed(list(run_messages(run))[:1])

    with django_capture_on_commit_callbacks() as enqueued:
        response = server_api.post(url(campaign.pk, "cancel"))

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert state(campaign, run) == (CampaignStatus.CANCELLED, RunStatus.CANCELLED)
    assert len(enqueued) == 1  # the task that cancels the run's pending messages
    assert tasks.campaign_run_cancel_messages(str(run.pk), "test") == 3
    run.refresh_from_db()
    assert (run.pending, run.cancelled, run.successful) == (0, 3, 1)
    assert step(run) is False
    assert run_messages(run).count() == 4


@pytest.mark.django_db(transaction=True)
def test_the_cancel_task_looks_again_for_a_message_a_worker_was_sending(app, audience, monkeypatch):
    """messages_cancel skips the row a worker holds; the run's cancel task then runs again a
    little later for what is still pending."""
    campaign, run = started(app)
    step(run)
    held, free = list(run_messages(run))
    services.campaign_cancel(campaign=campaign, actor="operator")
    published: list[tuple[str, list, float | None]] = []
    monkeypatch.setattr(
        dispatch,
        "publish",
        lambda task, *, args, queue, countdown=None: published.append((task, args, countdown)),
    )
    locked, release = threading.Event(), threading.Event()

    def worker() -> None:
        try:
            with transaction.atomic():
                Message.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert locked.wait(10)
        assert tasks.campaign_run_cancel_messages(str(run.pk), "operator") == 1
    finally:
        release.set()
        thread.join(10)

    assert published == [
        (
            "campaigns.cancel_run_messages",
            [str(run.pk), "operator", 1],
            services.RUN_CANCEL_PASS_SECONDS,
        )
    ]
    assert Message.objects.get(pk=free.pk).status == MessageStatus.CANCELLED
    assert tasks.campaign_run_cancel_messages(str(run.pk), "operator", 1) == 1
    assert len(published) == 1  # nothing left pending: no third pass
    run.refresh_from_db()
    assert (run.pending, run.cancelled) == (0, 2)


def test_a_paused_recurring_campaign_skips_its_scheduled_occurrence(app, audience):
    campaign = campaign_create(
        app.application, schedule={"crontab": "0 9 * * *", "timezone": "UTC"}
    )
    run = services.campaign_execute(campaign=campaign, actor="test")
    services.campaign_pause(campaign=campaign, actor="operator")

    assert tasks.start_scheduled_run(str(campaign.pk), "crontab") is None
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1
    assert state(campaign, run) == (CampaignStatus.PAUSED, RunStatus.PAUSED)


# --- The admin's actions -----------------------------------------------------------------------

CHANGELIST = "/admin/campaigns/campaign/"


def notices(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def act(client, action: str, campaigns, **extra):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(c.pk) for c in campaigns], **extra},
    )


def test_the_pause_and_resume_actions_go_through_the_services(admin_client, app, audience):
    running, run = started(app)
    draft = campaign_create(app.application, name="draft-one")

    asked = act(admin_client, "pause_selected", [running, draft])
    assert asked.status_code == 200
    assert "no new batch of its run starts" in asked.content.decode()
    assert state(running, run) == (CampaignStatus.RUNNING, RunStatus.RUNNING)

    paused = act(admin_client, "pause_selected", [running, draft], confirm="yes")

    assert state(running, run) == (CampaignStatus.PAUSED, RunStatus.PAUSED)
    assert sorted(notices(paused)) == [
        ("error", "draft-one: A draft campaign cannot be paused."),
        ("success", "Paused 1 campaign(s)."),
    ]

    resumed = act(admin_client, "resume_selected", [running], confirm="yes")

    assert state(running, run) == (CampaignStatus.RUNNING, RunStatus.RUNNING)
    assert notices(resumed)[-1] == ("success", "Resumed 1 campaign(s).")
