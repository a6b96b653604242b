"""The delivery pipeline run in-process: real adapters over real HTTP to the fake providers,
no worker. Claims, skips, statuses, events, retries, the stale-pending sweep and the status
listeners."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging import delivery, dispatch, signals
from messaging.delivery import record
from messaging.delivery import send as delivery_send
from messaging.models import Message, MessageEvent, MessageStatus, SubscriptionEvent, SweepMark
from messaging.services.messages import (
    Content,
    Delivery,
    message_send,
    messages_cancel,
    messages_requeue,
)
from messaging.services.subscriptions import subscription_disable
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

IOS_OK = "ab" * 32
ANDROID_OK = "fcm-ok:" + "A" * 140
_tokens = iter(range(1, 1_000_000))


def ios_token(prefix: str = "ab") -> str:
    """A distinct APNs token starting with a fake provider's prefix."""
    return f"{prefix}{next(_tokens):0{64 - len(prefix)}x}"


def send(application, subscriptions, **options) -> list[Message]:
    run = options.pop("campaign_run_id", None)
    return message_send(
        application=application,
        subscriptions=subscriptions,
        content=Content(title="Hello", body="World", data={"n": "1"}),
        delivery=Delivery(**options),
        campaign_run_id=run,
    ).messages


def ids(messages) -> list[str]:
    return [str(m.pk) for m in messages]


def fresh(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def events(message) -> list[tuple[str, str]]:
    return list(
        MessageEvent.objects.filter(message=message)
        .order_by("at", "id")
        .values_list("type", "status")
    )


def requests(providers) -> tuple[int, int]:
    return providers.apns_stats()["requests"], providers.fcm_stats()["requests"]


recorded: list[Counter] = []


def record_transitions(*, transitions: Counter, **_signal) -> None:
    recorded.append(Counter(transitions))


@pytest.fixture
def listener():
    signals.message_statuses_changed.connect(record_transitions)
    recorded.clear()
    yield recorded
    signals.message_statuses_changed.disconnect(record_transitions)
    recorded.clear()


@pytest.fixture
def broker_kept():
    """The broker holds the marker the sweep looks for: it lost nothing."""
    dispatch.broker_marker_place()


def broker_loses_its_data() -> None:
    """As a Redis restart without persistence: every key of the broker's database is gone."""
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture
def enqueued(monkeypatch, broker_kept):
    """What the pipeline hands to the broker: (queue, ids, countdown) per call."""
    calls: list[tuple[str, list[str], float | None]] = []

    def enqueue(queue, message_ids, countdown=None):
        calls.append((queue, [str(i) for i in message_ids], countdown))

    monkeypatch.setattr(dispatch, "enqueue", enqueue)
    return calls


# --- Success and idempotency ----------------------------------------------------------------


def test_a_batch_is_sent_and_recorded_with_events(fake_app, providers):
    ios = subscription_create(fake_app, token=IOS_OK)
    android = subscription_create(fake_app, type="AndroidPush", token=ANDROID_OK)
    messages = send(fake_app, [ios, android])

    report = delivery.deliver_batch(ids(messages), queue="messages")

    assert (report.claimed, report.outcomes) == (2, Counter({"successful": 2}))
    for message in map(fresh, messages):
        assert message.status == MessageStatus.SUCCESSFUL
        assert message.attempts == 1
        assert message.sent_at is not None
        assert message.provider_id
        assert (message.error_code, message.error_permanent) == ("", None)
        assert events(message) == [("attempt", ""), ("status", "successful")]
        attempt = message.events.get(type="attempt").details
        assert attempt["ok"] is True and attempt["attempt"] == 1
        assert attempt["status_code"] == 200 and attempt["queue"] == "messages"
        assert attempt["provider_id"] == message.provider_id
    assert requests(providers) == (1, 1)


def test_a_batch_delivered_twice_sends_nothing_twice(fake_app, providers):
    messages = send(fake_app, [subscription_create(fake_app, token=ios_token())])
    delivery.deliver_batch(ids(messages))
    before = (requests(providers), MessageEvent.objects.count())

    report = delivery.deliver_batch(ids(messages))

    assert report.claimed == 0
    assert (requests(providers), MessageEvent.objects.count()) == before
    assert fresh(messages[0]).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_message_another_worker_is_sending_is_skipped(fake_app, providers):
    [message] = send(fake_app, [subscription_create(fake_app, token=ios_token())])
    db = connection.settings_dict
    other_worker = psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
        dbname=db["NAME"],
    )  # fmt: skip
    try:
        # Another worker's claim: its transaction holds the row lock while it sends.
        other_worker.execute(
            "SELECT id FROM messaging_message WHERE id = %s FOR UPDATE", [message.pk]
        )
        assert delivery.deliver_batch([str(message.pk)]).claimed == 0
        assert requests(providers) == (0, 0)
        assert fresh(message).status == "pending"
    finally:
        other_worker.rollback()  # that worker died: PostgreSQL releases its lock
        other_worker.close()
    assert delivery.deliver_batch([str(message.pk)]).claimed == 1
    assert fresh(message).status == MessageStatus.SUCCESSFUL


def test_a_message_not_yet_due_is_skipped(fake_app, providers):
    later = timezone.now() + timedelta(minutes=5)
    [message] = send(fake_app, [subscription_create(fake_app, token=ios_token())], send_after=later)

    assert delivery.deliver_batch([str(message.pk)]).claimed == 0

    assert requests(providers) == (0, 0)
    assert fresh(message).status == MessageStatus.PENDING
    Message.objects.filter(pk=message.pk).update(send_after=timezone.now())
    assert delivery.deliver_batch([str(message.pk)]).claimed == 1
    assert requests(providers) == (1, 0)


def test_unknown_ids_are_ignored(fake_app, providers):
    [message] = send(fake_app, [subscription_create(fake_app, token=ios_token())])

    report = delivery.deliver_batch([str(uuid.uuid4()), str(message.pk)])

    assert report.claimed == 1
    assert requests(providers) == (1, 0)


# --- Failures that never reach a provider -------------------------------------------------------


def test_a_message_whose_subscription_was_deleted_meanwhile_fails_unsent(fake_app, providers):
    # No constraint ties a message to its subscription (Message.subscription): a delete that
    # raced the insert leaves the message, and its claim must end it rather than skip it.
    subscription = subscription_create(fake_app, token=ios_token())
    [message] = send(fake_app, [subscription])
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM messaging_subscriptionevent WHERE subscription_id = %s", [subscription.pk]
        )
        cursor.execute("DELETE FROM messaging_subscription WHERE id = %s", [subscription.pk])

    report = delivery.deliver_batch([str(message.pk)])

    assert report.outcomes == Counter({"failed": 1})
    message = fresh(message)
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "subscription_deleted")
    assert message.attempts == 0
    assert events(message) == [("status", "failed")]
    assert requests(providers) == (0, 0)


def test_a_subscription_disabled_after_the_send_fails_the_message_unsent(fake_app, providers):
    subscription = subscription_create(fake_app, token=ios_token())
    [message] = send(fake_app, [subscription])
    subscription_disable(subscription_id=subscription.pk, reason="user_opt_out")

    report = delivery.deliver_batch([str(message.pk)])

    assert report.outcomes == Counter({"failed": 1})
    message = fresh(message)
    assert message.status == MessageStatus.FAILED
    assert (message.error_code, message.error_permanent) == ("subscription_disabled", True)
    assert message.attempts == 0
    assert events(message) == [("status", "failed")]
    assert requests(providers) == (0, 0)


def test_a_channel_without_an_adapter_fails_permanently(fake_app, providers):
    email = subscription_create(fake_app, type="Email", token="kim@example.com")
    [message] = send(fake_app, [email])

    delivery.deliver_batch([str(message.pk)])

    message = fresh(message)
    assert message.status == MessageStatus.FAILED
    assert (message.error_code, message.error_permanent) == ("channel_unavailable", True)
    assert "Email" in message.error_message
    assert requests(providers) == (0, 0)


def test_missing_credentials_fail_the_group_not_the_batch(providers, app):
    # `app` has no provider credentials at all; the fake-backed adapters refuse to send.
    [message] = send(app.application, [subscription_create(app.application, token=ios_token())])

    delivery.deliver_batch([str(message.pk)])

    message = fresh(message)
    assert message.status == MessageStatus.FAILED
    assert message.error_permanent is True
    # A channel without credentials is unavailable, as the contract says.
    assert message.error_code == "channel_unavailable"
    assert requests(providers) == (0, 0)


# --- Provider answers -----------------------------------------------------------------------------


def test_a_dead_token_fails_and_disables_the_subscription(fake_app, providers):
    dead = subscription_create(fake_app, token=ios_token("dead"))
    [message] = send(fake_app, [dead])

    delivery.deliver_batch([str(message.pk)])

    message = fresh(message)
    assert (message.status, message.error_code) == ("failed", "token_invalid")
    assert message.error_permanent is True
    dead.refresh_from_db()
    assert (dead.enabled, dead.disabled_reason) == (False, "token_invalid")
    assert SubscriptionEvent.objects.filter(
        subscription=dead, kind="disabled", actor="system:delivery"
    ).exists()


def test_a_permanent_error_fails_at_once_without_a_retry(fake_app, providers, enqueued):
    [message] = send(fake_app, [subscription_create(fake_app, token=ios_token("0413"))])

    delivery.deliver_batch([str(message.pk)])

    message = fresh(message)
    assert (message.status, message.error_code) == ("failed", "PayloadTooLarge")
    assert (message.attempts, message.error_permanent) == (1, True)
    assert enqueued == []


def test_a_temporary_error_is_retried_on_the_retry_queue_after_retry_after(
    fake_app, providers, enqueued, django_capture_on_commit_callbacks
):
    [message] = send(fake_app, [subscription_create(fake_app, token=ios_token("0429"))])

    with django_capture_on_commit_callbacks(execute=True):
        report = delivery.deliver_batch([str(message.pk)], queue="messages")

    assert report.outcomes == Counter({"retry": 1})
    message = fresh(message)
    assert message.status == MessageStatus.PENDING
    assert (message.attempts, message.error_code, message.error_permanent) == (
        1,
        "TooManyRequests",
        False,
    )
    assert message.enqueued_at > timezone.now()  # the sweep leaves it alone until it is due
    [(queue, retried, countdown)] = enqueued
    assert (queue, retried) == ("retry", [str(message.pk)])
    assert countdown >= 1.0  # the provider's Retry-After
    assert events(message) == [("attempt", "")]
    assert message.events.get().details["retry_after"] == 1


def test_attempts_keep_the_queue_they_ran_on(fake_app, providers):
    # Failing and succeeding messages interleaved in one batch from the `messages` queue: a
    # retry scheduled for one must not relabel the attempts of the others.
    subscriptions = []
    for _ in range(3):
        subscriptions.append(subscription_create(fake_app, token=ios_token("0500")))
        subscriptions.append(subscription_create(fake_app, token=ios_token()))
    messages = send(fake_app, subscriptions)

    delivery.deliver_batch(ids(messages), queue="messages")

    queues = MessageEvent.objects.filter(message__in=messages, type="attempt").values_list(
        "details__queue", flat=True
    )
    assert list(queues) == ["messages"] * 6


def test_retries_give_up_after_the_last_attempt(fake_app, providers, settings):
    settings.MESSAGE_MAX_ATTEMPTS = 2
    [message] = send(fake_app, [subscription_create(fake_app, token=ios_token("0500"))])

    first = delivery.deliver_batch([str(message.pk)], queue="messages")
    second = delivery.deliver_batch([str(message.pk)], queue="retry")

    assert (first.outcomes, second.outcomes) == (Counter({"retry": 1}), Counter({"failed": 1}))
    message = fresh(message)
    assert message.status == MessageStatus.FAILED
    assert (message.attempts, message.error_permanent) == (2, False)
    assert message.error_code == "InternalServerError"
    assert "2 attempts" in message.error_message
    assert events(message) == [("attempt", ""), ("attempt", ""), ("status", "failed")]
    queues = [e.details["queue"] for e in message.events.filter(type="attempt").order_by("at")]
    assert queues == ["messages", "retry"]
    assert requests(providers) == (2, 0)


@pytest.mark.parametrize("retry_after", [None, 0.0, 1.0, 30.0, 5000.0])
def test_retry_delay_is_never_below_retry_after(settings, retry_after):
    settings.MESSAGE_RETRY_BASE_SECONDS = 2.0
    settings.MESSAGE_RETRY_MAX_SECONDS = 600.0
    for attempt in range(1, 12):
        for _ in range(50):
            assert record.retry_delay(attempt, retry_after) >= (retry_after or 0.0)


def test_retry_delay_grows_with_attempts_up_to_the_cap(settings):
    settings.MESSAGE_RETRY_BASE_SECONDS = 2.0
    settings.MESSAGE_RETRY_MAX_SECONDS = 100.0
    samples = {a: [record.retry_delay(a) for _ in range(200)] for a in range(1, 9)}

    for attempt in range(1, 6):  # 2, 4, 8, 16, 32 s, each with +-20 % jitter
        assert max(samples[attempt]) < min(samples[attempt + 1])
        assert 2.0 * 2 ** (attempt - 1) * 0.8 <= min(samples[attempt])
    assert max(max(s) for s in samples.values()) <= 100.0 * 1.2
    assert len({round(s, 6) for s in samples[3]}) > 1  # jittered, not lock-step


# --- Cancelled while in flight --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_cancel_while_a_batch_is_in_flight_leaves_it_to_the_worker(
    fake_app, providers, listener, monkeypatch
):
    """The claim's row lock is what keeps a message from being both cancelled and sent: a
    cancel (another connection) that arrives mid-send skips the locked row at once rather
    than wait for the send, and the message ends as the send says. Statistics count it
    once, as successful."""
    run = uuid.uuid4()
    [message] = send(
        fake_app, [subscription_create(fake_app, token=ios_token())], campaign_run_id=run
    )
    real_send_group = delivery_send.send_group
    cancelled: list[int] = []

    def cancel() -> None:
        try:
            cancelled.append(messages_cancel(message_ids=[message.pk], actor="operator"))
        finally:
            connections.close_all()

    canceller = threading.Thread(target=cancel)

    def cancel_then_send(application, channel, messages):
        canceller.start()
        canceller.join(timeout=10)
        assert not canceller.is_alive(), "the cancel waited for the claimed row"
        return real_send_group(application, channel, messages)

    monkeypatch.setattr(delivery_send, "send_group", cancel_then_send)

    delivery.deliver_batch([str(message.pk)])

    assert cancelled == [0]
    message = fresh(message)
    assert message.status == MessageStatus.SUCCESSFUL
    assert ("status", "cancelled") not in events(message)
    assert requests(providers) == (1, 0)
    assert sum(listener, Counter()) == Counter({(run, "pending", "successful"): 1})


# --- Status listeners -------------------------------------------------------------------------


def test_the_listeners_hear_each_batchs_transitions_per_campaign_run(fake_app, providers, listener):
    run = uuid.uuid4()
    ok = [subscription_create(fake_app, token=ios_token()) for _ in range(2)]
    dead = subscription_create(fake_app, token=ios_token("dead"))
    flaky = subscription_create(fake_app, token=ios_token("0500"))
    messages = send(fake_app, [*ok, dead, flaky], campaign_run_id=run)
    outside = send(fake_app, [subscription_create(fake_app, token=ios_token())])

    delivery.deliver_batch(ids(messages + outside))

    # One call per batch; a retry is no transition; a message of no run is not counted.
    assert listener == [Counter({(run, "pending", "successful"): 2, (run, "pending", "failed"): 1})]


# --- The stale-pending sweep ----------------------------------------------------------------------


def test_the_sweep_enqueues_lost_and_due_messages_only(app, settings, enqueued):
    settings.MESSAGE_STALE_AFTER_SECONDS = 300
    now = timezone.now()
    long_ago = now - timedelta(seconds=301)
    subscriptions = [subscription_create(app.application) for _ in range(7)]

    def one(i, **fields):
        priority = fields.pop("priority", "normal")
        [message] = send(app.application, [subscriptions[i]], priority=priority)
        Message.objects.filter(pk=message.pk).update(**fields)
        return fresh(message)

    lost = one(0, enqueued_at=long_ago)
    lost_high = one(1, enqueued_at=long_ago, priority="high")
    due = one(2, enqueued_at=None, send_after=now - timedelta(seconds=1))
    recent = one(3, enqueued_at=now - timedelta(seconds=299))
    not_due = one(5, enqueued_at=None, send_after=now + timedelta(seconds=60))
    finished = one(6, enqueued_at=long_ago, status="failed")

    assert delivery.pending_sweep(now=now) == 3

    # Each on its priority's queue, once, at once (the stale and the due come in two reads).
    handed = [(queue, i, countdown) for queue, batch, countdown in enqueued for i in batch]
    assert sorted(handed) == sorted(
        [("messages", i, None) for i in ids([lost, due])]
        + [("critical", i, None) for i in ids([lost_high])]
    )
    for message in (lost, lost_high, due):
        assert fresh(message).enqueued_at == now
    for message in (recent, not_due, finished):
        assert fresh(message).enqueued_at == message.enqueued_at
    # Handed over again, they are no longer stale.
    assert delivery.pending_sweep(now=now) == 0


def test_the_sweep_works_in_batches(app, settings, enqueued):
    settings.MESSAGE_BATCH_SIZE = 2
    long_ago = timezone.now() - timedelta(seconds=settings.MESSAGE_STALE_AFTER_SECONDS + 1)
    messages = send(app.application, [subscription_create(app.application) for _ in range(5)])
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(enqueued_at=long_ago)

    assert delivery.pending_sweep() == 5

    assert sorted(len(batch) for _, batch, _ in enqueued) == [1, 2, 2]
    assert sorted(i for _, batch, _ in enqueued for i in batch) == sorted(ids(messages))


def test_the_sweep_continues_where_the_last_one_stopped(app, settings, enqueued):
    settings.MESSAGE_STALE_AFTER_SECONDS = 300
    settings.MESSAGE_SWEEP_OVERLAP_SECONDS = 15
    t0 = timezone.now()
    subscriptions = [subscription_create(app.application) for _ in range(3)]
    assert delivery.pending_sweep(now=t0) == 0  # marks: stale up to t0 - 300 s, due up to t0

    [behind] = send(app.application, [subscriptions[0]])
    [late] = send(app.application, [subscriptions[1]])
    # Behind the last window (less its overlap): a sweep already read that stretch, so this
    # one does not read it again.
    Message.objects.filter(pk=behind.pk).update(enqueued_at=t0 - timedelta(seconds=316))
    # Enqueued just before the last sweep, committed after it: its window comes later.
    Message.objects.filter(pk=late.pk).update(enqueued_at=t0 - timedelta(seconds=1))

    t1 = t0 + timedelta(seconds=10)
    assert delivery.pending_sweep(now=t1) == 0  # late is not stale yet
    t2 = t0 + timedelta(seconds=301)
    assert delivery.pending_sweep(now=t2) == 1
    assert [batch for _, batch, _ in enqueued] == [ids([late])]
    assert fresh(behind).enqueued_at == t0 - timedelta(seconds=316)


def test_many_messages_due_at_one_instant_go_in_one_read_and_bounded_batches(
    app, settings, enqueued
):
    # A campaign's local time: thousands share one send_after. The batches handed over keep
    # that key in the index, so a query per batch would walk past all of them again.
    settings.MESSAGE_BATCH_SIZE = 50
    later = timezone.now() + timedelta(hours=1)
    subscriptions = [subscription_create(app.application) for _ in range(420)]
    messages = send(app.application, subscriptions, send_after=later)
    assert not enqueued
    Message.objects.update(send_after=timezone.now().replace(microsecond=0))

    with CaptureQueriesContext(connection) as queries:
        assert delivery.pending_sweep() == 420

    assert sorted(len(batch) for _, batch, _ in enqueued) == [20] + [50] * 8
    assert sorted(i for _, batch, _ in enqueued for i in batch) == sorted(ids(messages))
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and 'FROM "messaging_message"' in q["sql"]
    ]
    assert len(reads) == 2  # the stale window and the due window, once each
    assert delivery.pending_sweep() == 0


def test_a_sweep_stopped_by_its_limit_reads_the_same_window_again(app, settings, enqueued):
    long_ago = timezone.now() - timedelta(seconds=settings.MESSAGE_STALE_AFTER_SECONDS + 1)
    messages = send(app.application, [subscription_create(app.application) for _ in range(3)])
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(enqueued_at=long_ago)
    settings.MESSAGE_BATCH_SIZE = 2

    assert delivery.pending_sweep(limit=2) == 2
    assert delivery.pending_sweep(limit=2) == 1  # the first left its mark where it was
    assert sorted(i for _, batch, _ in enqueued for i in batch) == sorted(ids(messages))


def test_after_the_broker_lost_its_data_the_sweep_hands_over_all_pending_work(
    app, settings, enqueued
):
    settings.MESSAGE_STALE_AFTER_SECONDS = 300
    settings.MESSAGE_SWEEP_OVERLAP_SECONDS = 15
    now = timezone.now()
    subscriptions = [subscription_create(app.application) for _ in range(5)]
    sent = send(app.application, subscriptions)
    just_now, a_minute_ago, retry_later, old, done = sent
    Message.objects.filter(pk=just_now.pk).update(enqueued_at=now - timedelta(seconds=1))
    Message.objects.filter(pk=a_minute_ago.pk).update(enqueued_at=now - timedelta(seconds=60))
    Message.objects.filter(pk=retry_later.pk).update(enqueued_at=now + timedelta(seconds=40))
    Message.objects.filter(pk=old.pk).update(enqueued_at=now - timedelta(seconds=400))
    Message.objects.filter(pk=done.pk).update(status="successful")
    assert delivery.pending_sweep(now=now) == 1  # the broker kept its data: only the stale
    enqueued.clear()
    lost_runs = []

    def receiver(sender, now, **kwargs):
        lost_runs.append(now)

    signals.broker_data_lost.connect(receiver)
    try:
        broker_loses_its_data()
        assert dispatch.broker_marker_present() is False
        assert delivery.pending_sweep(now=now) == 2
    finally:
        signals.broker_data_lost.disconnect(receiver)

    handed = sorted((queue, i, countdown) for queue, batch, countdown in enqueued for i in batch)
    [(retry_queue, retried, countdown)] = [h for h in handed if h[2]]
    assert (retry_queue, retried) == ("retry", str(retry_later.pk)) and 38 <= countdown <= 40
    assert sorted(h[1] for h in handed if not h[2]) == sorted(ids([just_now, a_minute_ago]))
    assert fresh(retry_later).enqueued_at == now + timedelta(seconds=40)  # still due then
    assert lost_runs == [now]
    # Put back once the work was handed over: the next sweep finds nothing lost.
    assert dispatch.broker_marker_present() is True
    enqueued.clear()
    assert delivery.pending_sweep(now=now) == 0 and enqueued == []


def test_a_broker_never_marked_gets_its_marker_without_a_lost_tasks_warning(
    app, settings, enqueued, log_lines
):
    """A first start (no marker, and none was ever placed) is not a loss; once the marker
    was placed, losing it is, and is said."""
    broker_loses_its_data()
    SweepMark.objects.filter(name=dispatch.BROKER_MARK).delete()
    settings.MESSAGE_STALE_AFTER_SECONDS = 300
    [message] = send(app.application, [subscription_create(app.application)])
    Message.objects.filter(pk=message.pk).update(enqueued_at=timezone.now())

    assert delivery.pending_sweep() == 0  # the pending message is not taken for lost
    assert dispatch.broker_marker_present() is True
    assert SweepMark.objects.filter(name=dispatch.BROKER_MARK).exists()
    assert delivery.pending_sweep() == 0
    assert log_lines() == []  # idle sweeps say nothing

    broker_loses_its_data()
    assert delivery.pending_sweep() == 1
    [line] = log_lines()
    assert line["level"] == "warning"
    assert line["event"].startswith("The broker lost its queued tasks: enqueued 1 pending")
    assert [batch for _, batch, _ in enqueued] == [[str(message.pk)]]


def test_recording_a_send_is_a_heap_only_update(fake_app, providers):
    """No index holds what sending writes (status, errors, sent_at...): PostgreSQL rewrites
    the row in place, with no new index entries (see Message.Meta). An index on one of those
    columns, even in a condition, would make every send a non-HOT update."""
    subscriptions = [subscription_create(fake_app, token=ios_token()) for _ in range(20)]
    messages = send(fake_app, subscriptions)

    def hot_and_all() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_hot_updated(%s::regclass),"
                " pg_stat_get_xact_tuples_updated(%s::regclass)",
                [Message._meta.db_table] * 2,
            )
            return cursor.fetchone()

    hot_before, all_before = hot_and_all()
    delivery.deliver_batch(ids(messages), queue="messages")
    hot_after, all_after = hot_and_all()
    hot, updated = hot_after - hot_before, all_after - all_before
    assert {fresh(m).status for m in messages} == {MessageStatus.SUCCESSFUL}
    assert (hot, updated) == (20, 20)


def test_requeue_hands_pending_due_messages_over_now(app, enqueued):
    pending = send(app.application, [subscription_create(app.application)])[0]
    later = send(
        app.application,
        [subscription_create(app.application)],
        send_after=timezone.now() + timedelta(hours=1),
    )[0]
    done = send(app.application, [subscription_create(app.application)])[0]
    Message.objects.filter(pk=done.pk).update(status="successful")

    assert messages_requeue(message_ids=ids([pending, later, done])) == 1

    assert enqueued == [("messages", [str(pending.pk)], None)]
    assert fresh(pending).enqueued_at > pending.enqueued_at
    assert fresh(later).enqueued_at is None


def test_events_of_another_shape_are_written_apart_and_the_same(fake_app):
    """write_messages carries a batch's events in its UPDATE's rows when each message has at
    most one attempt and one status event at one time; anything else goes in a document of
    its own, with the same rows."""
    first, second = send(
        fake_app,
        [
            subscription_create(fake_app, token=ios_token("c1")),
            subscription_create(fake_app, token=ios_token("c2")),
        ],
    )
    from messaging.delivery.claim import claim_batch

    claimed = claim_batch([str(first.pk), str(second.pk)], timezone.now())
    at = timezone.now()
    shaped = [
        record._Event(message_id=claimed[0].id, type="attempt", status="", at=at, details={"n": 1}),
        record._Event(message_id=claimed[0].id, type="status", status="pending", at=at, details={}),
    ]
    assert record._rows_with_events(claimed, shaped) is not None
    two_attempts = [*shaped, shaped[0]._replace(details={"n": 2})]
    assert record._rows_with_events(claimed, two_attempts) is None
    foreign = [shaped[0]._replace(message_id=str(uuid.uuid4()))]
    assert record._rows_with_events(claimed, foreign) is None
    record.write_messages(claimed, two_attempts)
    assert [e.details for e in MessageEvent.objects.filter(message=first).order_by("id")] == [
        {"n": 1},
        {},
        {"n": 2},
    ]
