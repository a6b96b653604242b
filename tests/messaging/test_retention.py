"""Retention (messaging.retention): the purge deletes each application's messages older than
its retention_days with their events and inbox items (inbox counts kept right), and its old
subscription events; it leaves everything younger and other applications' rows of a longer
retention, works in bounded batches within a time budget and continues on the next run,
skips rows a worker holds, and writes one audit row per application per run. The frequency
cap's windows go once they count nothing."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts import audit
from accounts.models import Application, AuditEntry
from campaigns.models import Campaign, CampaignRun, RunStatus
from messaging import delivery, retention, tasks
from messaging.inbox.services import inbox_item_archive, inbox_item_read
from messaging.models import (
    FrequencyWindow,
    InboxCount,
    InboxItem,
    Message,
    MessageEvent,
    MessageStatus,
    SubscriptionEvent,
    SweepMark,
)
from messaging.services.messages import Content, Delivery, message_send
from signal_project import settings as project_settings
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db


def sent(application, subscription, n=1):
    """n messages to the subscription, each delivered (an inbox item for an inbox)."""
    messages = []
    for i in range(n):
        [message] = message_send(
            application=application,
            subscriptions=[subscription],
            content=Content(title=f"t{i}", body="b"),
            delivery=Delivery(),
        ).messages
        delivery.deliver_batch([str(message.pk)])
        messages.append(message)
    return messages


def aged(messages, days, *, hours=0):
    """Makes the messages (and their inbox items) as old as `days` (plus `hours`)."""
    at = timezone.now() - timedelta(days=days, hours=hours)
    ids = [m.pk for m in messages]
    Message.objects.filter(pk__in=ids).update(created_at=at)
    InboxItem.objects.filter(message_id__in=ids).update(created_at=at)
    return at


def pending(application, subscription, **fields):
    return Message.objects.create(
        application=application,
        subscription=subscription,
        channel=subscription.type,
        title="t",
        **fields,
    )


def counts_match_items(subscription):
    """The inbox's InboxCount against a count of its items."""
    count = InboxCount.objects.get(subscription=subscription)
    items = InboxItem.objects.filter(subscription=subscription, archived_at__isnull=True)
    return (count.unread, count.total) == (
        items.filter(read_at__isnull=True).count(),
        items.count(),
    )


def purge(**kw):
    return retention.expired_purge(**{"pause_seconds": 0, **kw})


def test_expired_messages_go_with_events_and_inbox_items_and_counts_stay_right(app, other_app):
    application = app.application
    application.retention_days = 30
    application.save(update_fields=["retention_days"])
    box = subscription_create(application, type="InAppMessage", token="device-1")
    old_unread, old_read, old_archived, young = sent(application, box, 4)
    inbox_item_read(subscription=box, item_id=old_read.pk, actor="t")
    inbox_item_archive(subscription=box, item_id=old_archived.pk)
    aged([old_unread, old_read, old_archived], 30, hours=1)
    aged([young], 29)
    assert InboxCount.objects.get(subscription=box).total == 3
    # Another application keeps 90 days: its 31-day-old message stays, its 91-day-old goes.
    phone = subscription_create(other_app.application)
    other_kept, other_gone = sent(other_app.application, phone, 2)
    aged([other_kept], 31)
    aged([other_gone], 91)
    old_ids = [old_unread.pk, old_read.pk, old_archived.pk, other_gone.pk]
    assert MessageEvent.objects.filter(message_id__in=old_ids).count() >= 4

    run = purge()

    assert run.finished
    assert set(Message.objects.values_list("pk", flat=True)) == {young.pk, other_kept.pk}
    assert not MessageEvent.objects.filter(message_id__in=old_ids).exists()
    assert MessageEvent.objects.filter(message_id=young.pk).exists()
    assert list(InboxItem.objects.values_list("pk", flat=True)) == [young.pk]
    assert counts_match_items(box)
    assert (
        InboxCount.objects.get(subscription=box).unread,
        run.purged[application.pk].inbox_items,
    ) == (1, 3)
    assert run.purged[application.pk].messages == 3
    assert run.purged[other_app.application.pk].messages == 1

    entries = AuditEntry.objects.filter(action=audit.RETENTION_PURGED)
    assert {e.application_id for e in entries} == {application.pk, other_app.application.pk}
    mine = entries.get(application_id=application.pk)
    assert mine.actor == audit.SYSTEM and mine.object_type == "application"
    assert mine.object_id == str(application.pk)
    assert mine.details["messages"] == 3 and mine.details["inbox_items"] == 3
    assert mine.details["events"] == run.purged[application.pk].events > 0

    # Nothing left: the next run deletes nothing and records nothing.
    again = purge()
    assert again.finished and again.purged == {}
    assert AuditEntry.objects.filter(action=audit.RETENTION_PURGED).count() == 2


def test_old_subscription_events_go_young_ones_stay(app, other_app):
    mine = subscription_create(app.application)
    theirs = subscription_create(other_app.application)
    SubscriptionEvent.objects.filter(subscription=mine).update(
        created_at=timezone.now() - timedelta(days=91)
    )
    SubscriptionEvent.objects.filter(subscription=theirs).update(
        created_at=timezone.now() - timedelta(days=89)
    )
    young = SubscriptionEvent.objects.create(subscription=mine, kind="updated", actor="t")

    run = purge()

    assert list(SubscriptionEvent.objects.filter(subscription=mine)) == [young]
    assert SubscriptionEvent.objects.filter(subscription=theirs).exists()
    assert run.purged[app.application.pk].subscription_events >= 1
    assert other_app.application.pk not in run.purged


def test_batches_are_bounded_oldest_first_and_the_next_run_continues(app):
    application = app.application
    phone = subscription_create(application)
    messages = sent(application, phone, 5)
    for age, message in enumerate(messages):
        aged([message], 100 + age)
    oldest_first = [m.pk for m in reversed(messages)]

    # A budget of 0 s: one batch per run, and the run says it did not finish.
    first = purge(batch_size=2, budget_seconds=0)
    assert not first.finished and first.batches == 1
    assert first.purged[application.pk].messages == 2
    assert set(Message.objects.values_list("pk", flat=True)) == set(oldest_first[2:])
    second = purge(batch_size=2, budget_seconds=0)
    assert second.purged[application.pk].messages == 2
    assert list(Message.objects.values_list("pk", flat=True)) == [oldest_first[4]]
    last = purge(batch_size=2)
    assert last.finished and last.purged[application.pk].messages == 1
    assert not Message.objects.exists()
    # One audit row per run that deleted something.
    figures = [
        e.details["messages"]
        for e in AuditEntry.objects.filter(action=audit.RETENTION_PURGED).order_by("at")
    ]
    assert figures == [2, 2, 1]


def test_a_pending_campaign_message_counts_cancelled_and_the_run_completes(app):
    application = app.application
    phone = subscription_create(application)
    other = subscription_create(application)
    campaign = Campaign.objects.create(
        application=application, name="c", status="running", title="t", body="b"
    )
    run = CampaignRun.objects.create(
        campaign=campaign, number=1, trigger="execute", targeted=2, pending=1, successful=1,
        fanout_done=True,
    )  # fmt: skip
    stuck = pending(application, phone, campaign_id=campaign.pk, campaign_run_id=run.pk)
    done = pending(
        application, other, campaign_id=campaign.pk, campaign_run_id=run.pk,
        status=MessageStatus.SUCCESSFUL,
    )  # fmt: skip
    # A message scheduled for later is kept until it has been sent, however old.
    scheduled = pending(application, phone, send_after=timezone.now() + timedelta(days=1))
    aged([stuck, done, scheduled], 120)

    result = purge()

    assert list(Message.objects.values_list("pk", flat=True)) == [scheduled.pk]
    assert result.purged[application.pk].pending_cancelled == 1
    run.refresh_from_db()
    assert (run.pending, run.cancelled, run.successful) == (0, 1, 1)
    assert run.status == RunStatus.COMPLETED


def test_dry_run_counts_and_deletes_nothing(app, other_app):
    phone = subscription_create(app.application)
    old = sent(app.application, phone, 3)
    aged(old, 95)
    out = io.StringIO()
    call_command("purge_expired", "--dry-run", stdout=out)
    assert f"application {app.application.pk}: would delete messages 3, events " in out.getvalue()
    assert Message.objects.count() == 3
    assert not AuditEntry.objects.filter(action=audit.RETENTION_PURGED).exists()

    out = io.StringIO()
    call_command("purge_expired", "--application", str(other_app.application.pk), stdout=out)
    assert "Nothing expired." in out.getvalue() and Message.objects.count() == 3
    out = io.StringIO()
    call_command("purge_expired", "--application", str(app.application.pk), stdout=out)
    assert f"application {app.application.pk}: deleted messages 3," in out.getvalue()
    assert "done." in out.getvalue() and not Message.objects.exists()


def test_an_unknown_application_is_an_error(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("purge_expired", "--application", "not-an-id")


def test_the_task_is_on_the_beat_schedule_and_purges(app):
    entry = project_settings.CELERY_BEAT_SCHEDULE["purge-expired"]
    assert entry["task"] == "messaging.purge_expired"
    assert entry["options"]["queue"] == "messages"
    phone = subscription_create(app.application)
    aged(sent(app.application, phone, 2), 91)
    assert tasks.purge_expired.apply().get()["messages"] == 2
    assert not Message.objects.exists()


def _raw_connection():
    params = connection.settings_dict
    return psycopg.connect(
        host=params["HOST"] or "127.0.0.1",
        port=params["PORT"] or 5432,
        user=params["USER"],
        dbname=params["NAME"],
        autocommit=False,
    )


@pytest.mark.django_db(transaction=True)
def test_a_message_a_worker_holds_is_left_for_a_later_run_and_one_purge_runs_at_a_time(app):
    phone = subscription_create(app.application)
    held, free = sent(app.application, phone, 2)
    aged([held, free], 100)
    with _raw_connection() as other:
        # A worker sending `held` holds its row lock until it records the outcome.
        other.execute("SELECT 1 FROM messaging_message WHERE id = %s FOR UPDATE", [held.pk])
        run = purge()
        assert list(Message.objects.values_list("pk", flat=True)) == [held.pk]
        assert run.purged[app.application.pk].messages == 1
        other.rollback()

    # Another purge (another process or host) holds the lease.
    running = retention.PurgeLease()
    assert running.take()
    skipped = purge()
    assert skipped.skipped and Message.objects.filter(pk=held.pk).exists()
    running.release()
    assert purge().purged[app.application.pk].messages == 1
    assert not Message.objects.exists()


# --- The lease: one purge at a time, whatever connection each statement runs on -----------------


def lease_expiry():
    return SweepMark.objects.get(name=retention.PURGE_LEASE).position


def test_the_lease_is_held_by_one_purge_at_a_time_and_given_back():
    first, second = retention.PurgeLease(60), retention.PurgeLease(60)
    assert first.take()
    assert not second.take()
    assert lease_expiry() == first.expires > timezone.now()
    first.release()
    assert lease_expiry() <= timezone.now()
    assert second.take()
    second.release()


@pytest.mark.django_db(transaction=True)
def test_the_lease_holds_across_connections_each_statement_its_own_transaction():
    """As behind PgBouncer in transaction mode: a purge's statements may each run on another
    server connection; the lease is a row, so it holds across them."""

    def take_elsewhere() -> int:
        """What another purge's take does, on a connection of its own."""
        with _raw_connection() as other:
            now = timezone.now()
            taken = other.execute(
                "UPDATE messaging_sweepmark SET position = %s WHERE name = %s AND position <= %s",
                [now + timedelta(seconds=60), retention.PURGE_LEASE, now],
            ).rowcount
            other.rollback()
            return taken

    lease = retention.PurgeLease(60)
    assert lease.take()
    connection.close()  # the next statements run on new server connections
    assert take_elsewhere() == 0
    lease._renewed = 0.0
    assert lease.keep()
    connection.close()
    lease.release()
    assert take_elsewhere() == 1


def test_a_lease_whose_holder_died_is_taken_once_it_ran_out_and_the_old_holder_lets_go():
    dead = retention.PurgeLease(60)
    assert dead.take()
    SweepMark.objects.filter(name=retention.PURGE_LEASE).update(
        position=timezone.now() - timedelta(seconds=1)
    )  # it ran out: its holder never extended it
    successor = retention.PurgeLease(60)
    assert successor.take()
    dead._renewed = 0.0  # due for extension: it finds the lease gone and stops
    assert not dead.keep()
    dead.release()  # gives back nothing of the successor's
    assert lease_expiry() == successor.expires > timezone.now()
    successor._renewed = 0.0
    assert successor.keep() and lease_expiry() == successor.expires


def test_a_purge_that_loses_its_lease_stops_after_the_batch(app, monkeypatch):
    phone = subscription_create(app.application)
    aged(sent(app.application, phone, 3), 100)
    monkeypatch.setattr(retention.PurgeLease, "keep", lambda self: False)
    run = purge(batch_size=1)
    assert run.batches == 1 and not run.finished
    assert Message.objects.count() == 2


# --- The frequency cap's windows -----------------------------------------------------------------


def stamped(application, recipients, at):
    """Counts one capped message for each recipient at `at`, as a send's grant records it."""
    for recipient in recipients:
        window, _ = FrequencyWindow.objects.get_or_create(
            recipient=recipient, defaults={"application": application}
        )
        FrequencyWindow.objects.filter(pk=window.pk).update(sent=[*window.sent, at], granted=1)


def test_frequency_windows_that_count_nothing_go_in_bounded_batches(app, other_app):
    capped, uncapped = app.application, other_app.application
    Application.objects.filter(pk=capped.pk).update(frequency_cap={"max": 3, "per_seconds": 86_400})
    now = timezone.now()
    old = [uuid.uuid4() for _ in range(5)]
    young = [uuid.uuid4() for _ in range(2)]
    stamped(capped, old, now - timedelta(days=2))
    stamped(capped, young[:1], now - timedelta(days=2))
    stamped(capped, young, now - timedelta(hours=1))  # one old and one recent stamp: counts
    stamped(uncapped, [uuid.uuid4() for _ in range(3)], now - timedelta(minutes=1))
    windows = FrequencyWindow.objects

    run = retention.expired_purge(now=now, batch_size=2, pause_seconds=0)

    assert run.finished
    assert set(windows.values_list("recipient", flat=True)) == set(young)
    assert run.purged[capped.pk].frequency_windows == 5
    # Without a cap nothing is counted: every window of the application goes.
    assert run.purged[uncapped.pk].frequency_windows == 3
    # 10 windows in batches of 2: a bounded batch per transaction, each one looked at once.
    assert run.batches >= 5
    audited = AuditEntry.objects.get(application_id=capped.pk, action=audit.RETENTION_PURGED)
    assert audited.details["frequency_windows"] == 5


def test_the_dry_run_counts_frequency_windows_and_one_application_purge_keeps_the_others(
    app, other_app
):
    now = timezone.now()
    stamped(app.application, [uuid.uuid4()], now)
    stamped(other_app.application, [uuid.uuid4()], now)

    dry = retention.expired_purge(now=now, application_id=app.application.pk, dry_run=True)
    assert dry.purged[app.application.pk].frequency_windows == 1
    assert FrequencyWindow.objects.count() == 2

    retention.expired_purge(now=now, application_id=app.application.pk, pause_seconds=0)
    assert list(FrequencyWindow.objects.values_list("application_id", flat=True)) == [
        other_app.application.pk
    ]


@pytest.mark.django_db(transaction=True)
def test_a_window_a_send_is_counting_is_left_for_a_later_run(app):
    counting, idle = uuid.uuid4(), uuid.uuid4()
    stamped(app.application, [counting, idle], timezone.now())  # no cap: both count nothing
    with _raw_connection() as other:
        # A batch that sends holds its recipients' rows until it commits.
        other.execute(
            "SELECT 1 FROM messaging_frequencywindow WHERE recipient = %s FOR UPDATE", [counting]
        )
        run = purge()
        assert run.purged[app.application.pk].frequency_windows == 1
        assert list(FrequencyWindow.objects.values_list("recipient", flat=True)) == [counting]
        other.rollback()
    assert purge().purged[app.application.pk].frequency_windows == 1
