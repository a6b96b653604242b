"""Delivery to the in-app inbox: items written with the success, counts moved set-based,
events published after commit, reading moves the message to `received`."""

from __future__ import annotations

import json

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.selectors import channels_ready
from messaging import delivery
from messaging.inbox import events
from messaging.inbox.selectors import inbox_count_get, inbox_item_list
from messaging.inbox.services import (
    inbox_item_archive,
    inbox_item_read,
    inbox_item_unread,
    inbox_read_all,
)
from messaging.models import InboxCount, InboxItem, Message, MessageStatus
from messaging.services.messages import Content, Delivery, message_send
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream():
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    keys = client.keys("inbox:*")
    if keys:
        client.delete(*keys)
    yield client
    keys = client.keys("inbox:*")
    if keys:
        client.delete(*keys)


def inbox(app, device="device-1", user=None):
    return subscription_create(
        app.application, type="InAppMessage", token=device, external_user_id=user
    )


def send(application, subscriptions, title="Hello", **parts):
    return message_send(
        application=application,
        subscriptions=subscriptions,
        content=Content(title=title, body="World", data={"n": "1"}, parts=parts),
        delivery=Delivery(),
    ).messages


@pytest.fixture(autouse=True)
def committed(django_capture_on_commit_callbacks):
    """Runs what waits for the commit (the events) as each test's calls return."""
    global _committed
    _committed = django_capture_on_commit_callbacks
    yield


def after_commit(call, *args, **kwargs):
    with _committed(execute=True):
        return call(*args, **kwargs)


def deliver(messages):
    return after_commit(delivery.deliver_batch, [str(m.pk) for m in messages])


def entries(client, subscription):
    return [
        (fields["event"], json.loads(fields["data"]))
        for _id, fields in client.xrange(events.key_of(subscription.pk))
    ]


def test_an_in_app_message_becomes_an_unread_item_with_its_count(app, stream):
    assert channels_ready(application=app.application)["InAppMessage"] is True
    one, two = inbox(app, "d-1"), inbox(app, "d-2")
    part = {"image_url": "https://example.com/a.png", "action_url": "https://example.com/go"}
    messages = send(app.application, [one, two, one], in_app=part)

    report = deliver(messages)

    assert report.outcomes == {"successful": 3}
    assert {m.status for m in Message.objects.all()} == {MessageStatus.SUCCESSFUL}
    items = InboxItem.objects.filter(subscription=one).order_by("message_id")
    assert len(items) == 2 and items[0].title == "Hello" and items[0].in_app == part
    assert items[0].data == {"n": "1"} and items[0].read_at is None
    assert inbox_count_get(subscription=one) == (2, 2)
    assert inbox_count_get(subscription=two) == (1, 1)
    got = entries(stream, one)
    assert [e for e, _ in got] == ["message", "message", "count"]
    assert got[-1][1] == {"unread": 2, "total": 2}
    ids = {d["id"] for e, d in got if e == "message"}
    assert ids == {str(i.message_id) for i in items}
    assert set(got[0][1]) == {
        "id", "title", "body", "data", "in_app", "created_at", "read_at", "archived_at"
    }  # fmt: skip


def test_a_batch_writes_items_and_counts_in_constant_statements(app, stream):
    subscriptions = [inbox(app, f"d-{n}") for n in range(100)]
    messages = send(app.application, subscriptions)
    with CaptureQueriesContext(connection) as few:
        deliver(messages[:25])
    with CaptureQueriesContext(connection) as many:
        deliver(messages[25:])
    assert len(many) == len(few)
    counts = [q["sql"] for q in many if "inboxcount" in q["sql"]]
    assert len(counts) == 1 and "ON CONFLICT" in counts[0]
    assert InboxItem.objects.count() == 100
    assert sorted(InboxCount.objects.values_list("unread", flat=True)) == [1] * 100


def test_a_failed_delivery_writes_no_item_and_publishes_nothing(app, stream):
    subscription = inbox(app)
    [message] = send(app.application, [subscription])
    subscription.enabled = False
    subscription.save()

    deliver([message])

    assert Message.objects.get().status == MessageStatus.FAILED
    assert not InboxItem.objects.exists() and not entries(stream, subscription)


def test_delivered_twice_writes_one_item(app, stream):
    messages = send(app.application, [inbox(app)])
    deliver(messages)
    assert deliver(messages).claimed == 0
    assert InboxItem.objects.count() == 1 and InboxCount.objects.get().unread == 1


def test_transitions_move_counts_exactly_once_and_publish_counts(app, stream):
    subscription = inbox(app)
    a, b, c = send(app.application, [subscription] * 3)
    deliver([a, b, c])
    stream.delete(events.key_of(subscription.pk))

    def count():
        return inbox_count_get(subscription=subscription)

    after_commit(inbox_item_read, subscription=subscription, item_id=a.pk, actor="t")
    assert count() == (2, 3)
    after_commit(inbox_item_read, subscription=subscription, item_id=a.pk, actor="t")  # idempotent
    assert count() == (2, 3)
    assert Message.objects.get(pk=a.pk).status == MessageStatus.RECEIVED
    after_commit(inbox_item_unread, subscription=subscription, item_id=a.pk)
    after_commit(inbox_item_unread, subscription=subscription, item_id=a.pk)
    assert count() == (3, 3)
    assert Message.objects.get(pk=a.pk).status == MessageStatus.RECEIVED
    after_commit(inbox_item_archive, subscription=subscription, item_id=b.pk)  # unread archived
    after_commit(inbox_item_archive, subscription=subscription, item_id=b.pk)
    assert count() == (2, 2)
    # Reading an archived item moves no count.
    after_commit(inbox_item_read, subscription=subscription, item_id=b.pk, actor="t")
    assert count() == (2, 2)
    assert after_commit(inbox_read_all, subscription=subscription, actor="t") == (0, 2)
    assert after_commit(inbox_read_all, subscription=subscription, actor="t") == (0, 2)
    assert Message.objects.get(pk=c.pk).status == MessageStatus.RECEIVED
    after_commit(inbox_item_archive, subscription=subscription, item_id=c.pk)  # read archived
    assert count() == (0, 1)
    for state, expected in {"unread": 0, "read": 1, "archived": 2, "all": 1}.items():
        assert inbox_item_list(subscription=subscription, state=state).count() == expected

    counts = [d for e, d in entries(stream, subscription) if e == "count"]
    assert counts == [
        {"unread": 2, "total": 3},
        {"unread": 3, "total": 3},
        {"unread": 2, "total": 2},
        {"unread": 0, "total": 2},
        {"unread": 0, "total": 1},
    ]


def test_a_converted_message_stays_converted_when_read(app, stream):
    from messaging.services.messages import message_report_status

    subscription = inbox(app)
    [message] = send(app.application, [subscription])
    deliver([message])
    message_report_status(message=message, status=MessageStatus.CONVERTED, actor="t")
    after_commit(inbox_item_read, subscription=subscription, item_id=message.pk, actor="t")
    assert Message.objects.get().status == MessageStatus.CONVERTED
    assert inbox_count_get(subscription=subscription) == (0, 1)


def test_each_event_is_published_with_its_stream_entry_id_and_the_items_api_shape(
    app, stream, client_api
):
    subscription = inbox(app)
    pubsub = stream.pubsub()
    pubsub.subscribe(events.key_of(subscription.pk))
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    [message] = send(app.application, [subscription])

    deliver([message])

    published = [pubsub.get_message(timeout=1) for _ in range(2)]
    bodies = [json.loads(p["data"]) for p in published]
    entries_ = stream.xrange(events.key_of(subscription.pk))
    assert [b["id"] for b in bodies] == [entry_id for entry_id, _ in entries_]
    assert [b["event"] for b in bodies] == ["message", "count"]
    assert [b["data"] for b in bodies] == [fields["data"] for _, fields in entries_]
    listed = client_api.get("/api/v1/inbox", {"subscription_id": str(subscription.pk)})
    assert json.loads(bodies[0]["data"]) == listed.json()["results"][0]
    assert 0 < stream.ttl(events.key_of(subscription.pk)) <= 86400
    pubsub.close()


def test_nothing_is_published_when_the_transaction_rolls_back(app, stream):
    subscription = inbox(app)
    [message] = send(app.application, [subscription])
    with (
        _committed(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        delivery.deliver_batch([str(message.pk)])
        raise RuntimeError
    assert callbacks == []
    assert not entries(stream, subscription) and not InboxItem.objects.exists()
