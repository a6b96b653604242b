"""The message admin: its pages load with the events inline, and its actions call the same
services as the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import delivery, dispatch
from messaging.models import Message, MessageEvent, MessageStatus
from messaging.services.messages import Content, Delivery, message_send
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

URL = "/admin/messaging/message/"


@pytest.fixture
def enqueued(monkeypatch):
    calls = []

    def record(queue, ids, countdown=None):
        calls.append((queue, list(ids)))

    # Sending enqueues new messages; re-enqueueing goes through dispatch.hand_over.
    monkeypatch.setattr(dispatch, "enqueue", record)
    return calls


def send(app, count=1, **options) -> list[Message]:
    return message_send(
        application=app.application,
        subscriptions=[subscription_create(app.application) for _ in range(count)],
        content=Content(title="Admin title", body="Admin body"),
        delivery=Delivery(**options),
    ).messages


def act(admin_client, action: str, messages, confirm: bool = True):
    """Runs a changelist action as its confirmation page's button does (or, without
    `confirm`, as the changelist's own form does)."""
    data = {"action": action, "_selected_action": [str(m.pk) for m in messages]}
    return admin_client.post(URL, {**data, "confirm": "yes"} if confirm else data, follow=True)


@pytest.mark.parametrize("action", ["cancel_pending", "send_again"])
def test_the_sending_actions_ask_for_confirmation_first(admin_client, app, enqueued, action):
    messages = send(app, 2)
    Message.objects.update(enqueued_at=timezone.now() - timedelta(hours=1))

    response = act(admin_client, action, messages, confirm=False)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="confirm" value="yes"' in html
    for message in messages:
        assert f'name="_selected_action" value="{message.pk}"' in html
    assert enqueued == []
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.PENDING}
    assert not MessageEvent.objects.filter(status="cancelled").exists()


def test_select_all_carries_the_selection_to_the_confirmation(admin_client, app):
    messages = send(app, 3)

    page = admin_client.post(
        URL,
        {"action": "cancel_pending", "select_across": "1", "_selected_action": [messages[0].pk]},
    )
    assert 'name="select_across" value="1"' in page.content.decode()
    response = admin_client.post(
        URL,
        {
            "action": "cancel_pending",
            "select_across": "1",
            "_selected_action": [messages[0].pk],
            "confirm": "yes",
        },
        follow=True,
    )

    assert "Cancelled 3 pending message(s)." in response.content.decode()


def test_the_changelist_loads(admin_client, app):
    messages = send(app, 2)

    response = admin_client.get(URL)

    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == set(messages)
    html = response.content.decode()
    assert all(str(m.pk) in html for m in messages)


def test_the_changelist_filters_by_status(admin_client, app):
    pending, done = send(app, 2)
    Message.objects.filter(pk=done.pk).update(status=MessageStatus.FAILED)

    response = admin_client.get(URL, {"status__exact": "failed"})

    assert list(response.context["cl"].result_list) == [done]


def test_the_change_page_shows_the_events_inline(admin_client, app):
    email = subscription_create(app.application, type="Email", token="kim@example.com")
    [message] = message_send(
        application=app.application,
        subscriptions=[email],
        content=Content(title="Admin title"),
        delivery=Delivery(),
    ).messages
    delivery.deliver_batch([str(message.pk)], queue="messages")

    response = admin_client.get(f"{URL}{message.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Admin title" in html
    assert "channel_unavailable" in html
    [inline] = response.context["inline_admin_formsets"]
    assert inline.formset.queryset.count() == 2  # the attempt and the status event


def test_nobody_adds_messages_in_the_admin(admin_client):
    assert admin_client.get(f"{URL}add/").status_code == 403


def test_the_cancel_action_cancels_pending_messages_only(admin_client, app):
    pending = send(app, 2)
    finished = send(app, 1)[0]
    Message.objects.filter(pk=finished.pk).update(status=MessageStatus.SUCCESSFUL)

    response = act(admin_client, "cancel_pending", [*pending, finished])

    assert response.status_code == 200
    assert "Cancelled 2 pending message(s)." in response.content.decode()
    for message in pending:
        message.refresh_from_db()
        assert message.status == MessageStatus.CANCELLED
        event = MessageEvent.objects.get(message=message)
        assert (event.type, event.status, event.details) == (
            "status",
            "cancelled",
            {"actor": "admin:root"},
        )
    finished.refresh_from_db()
    assert finished.status == MessageStatus.SUCCESSFUL
    assert not MessageEvent.objects.filter(message=finished).exists()


def test_the_send_again_action_hands_pending_due_messages_over(admin_client, app, enqueued):
    [stuck] = send(app)
    [urgent] = send(app, priority="high")
    long_ago = timezone.now() - timedelta(hours=1)
    Message.objects.filter(pk__in=[stuck.pk, urgent.pk]).update(enqueued_at=long_ago)
    [later] = send(app, send_after=timezone.now() + timedelta(hours=1))
    [finished] = send(app)
    Message.objects.filter(pk=finished.pk).update(status=MessageStatus.FAILED, enqueued_at=long_ago)

    response = act(admin_client, "send_again", [stuck, urgent, later, finished])

    assert "Enqueued 2 pending message(s)." in response.content.decode()
    assert sorted(enqueued) == sorted(
        [("messages", [str(stuck.pk)]), ("critical", [str(urgent.pk)])]
    )
    for message in (stuck, urgent):
        message.refresh_from_db()
        assert message.enqueued_at > long_ago
    later.refresh_from_db()
    finished.refresh_from_db()
    assert later.enqueued_at is None
    assert finished.enqueued_at == long_ago


def test_the_send_again_action_reaches_the_outbox(admin_client, app, monkeypatch):
    added = []
    monkeypatch.setattr(dispatch.outbox, "add", lambda queue, ids: added.append((queue, list(ids))))
    [message] = send(app)

    act(admin_client, "send_again", [message])

    assert added == [("messages", [str(message.pk)])]
