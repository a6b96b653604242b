"""Erasing a user through the API while a real Celery worker and the fake providers run:
messages queued for the user are not sent afterwards, neither the ones stored before the
erasure nor the ones a campaign fan-out step that had read the user's subscriptions writes
after it, and nothing in the worker fails on the rows that went away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from messaging import delivery, dispatch
from messaging.models import InboxItem, Message, MessageStatus, Subscription, User
from messaging.services.erasure import ERASE_LEFTOVERS
from messaging.services.messages import Content, Delivery, message_send
from messaging.services.subscriptions import subscription_register

from .conftest import wait_for

pytestmark = pytest.mark.e2e


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def subscribe(app, type_: str, token: str, user: str) -> Subscription:
    subscription, _ = subscription_register(
        application=app, actor="test", type=type_, token=token, external_user_id=user
    )
    return subscription


def send(app, subscriptions, **body) -> list[str]:
    body = {"title": "Hello", "body": "World", **body}
    body["subscription_ids"] = [str(s.pk) for s in subscriptions]
    response = api(app.server_key).post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return [m["id"] for m in response.json()["messages"]]


def statuses(ids) -> list[str]:
    return list(Message.objects.filter(pk__in=ids).values_list("status", flat=True))


def test_an_erased_users_queued_messages_are_never_sent(live_app, fake_providers, celery_worker):
    log_start = len(celery_worker.log.read_text(errors="replace"))
    alice = [
        subscribe(live_app, "iOSPush", "a1" * 32, "alice"),
        subscribe(live_app, "iOSPush", "a2" * 32, "alice"),
    ]
    inbox = subscribe(live_app, "InAppMessage", "alice-phone", "alice")
    bruno = subscribe(live_app, "iOSPush", "b0" * 32, "bruno")
    # Delivered already: an inbox item, which the erasure deletes with its message.
    [delivered] = send(live_app, [inbox])
    wait_for(lambda: statuses([delivered]) == ["successful"], what="the inbox message")
    assert InboxItem.objects.filter(subscription_id=inbox.pk).count() == 1
    # Queued for later, to alice and to bruno.
    later = (timezone.now() + timedelta(seconds=3)).isoformat()
    queued = send(live_app, alice, send_after=later) + send(live_app, alice, send_after=later)
    [bruno_message] = send(live_app, [bruno], send_after=later)
    # A campaign fan-out step that read alice's subscriptions before the erasure.
    resolved = list(Subscription.objects.filter(pk__in=[s.pk for s in alice]))

    response = api(live_app.server_key).delete("/api/v1/users/alice")

    assert response.status_code == 204, response.content
    assert not User.objects.filter(external_user_id="alice").exists()
    assert not Message.objects.filter(pk__in=[*queued, delivered]).exists()
    assert not InboxItem.objects.filter(subscription_id=inbox.pk).exists()
    # The step writes its batch after the erasure, and the worker gets it at once.
    late = message_send(
        application=live_app,
        subscriptions=resolved,
        content=Content(title="Sale"),
        delivery=Delivery(),
    ).messages
    late_ids = [str(m.pk) for m in late]
    # Work that names the erased messages reaches the worker too.
    dispatch.enqueue("messages", queued)
    dispatch.outbox.flush()

    def bruno_sent():
        delivery.pending_sweep()  # beat does not run in the tests
        return statuses([bruno_message]) == ["successful"] and set(statuses(late_ids)) == {
            MessageStatus.FAILED
        }

    wait_for(bruno_sent, timeout=30, what="bruno's message and the late ones to finish")

    # Only bruno's one message reached the provider.
    assert fake_providers.apns_stats()["requests"] == 1
    assert set(Message.objects.filter(pk__in=late_ids).values_list("error_code", flat=True)) == {
        "subscription_deleted"
    }
    # The sweep of leftovers (published with a delay by the erasure) deletes them.
    dispatch.publish(ERASE_LEFTOVERS, args=[[str(s.pk) for s in alice]], queue="critical")
    wait_for(
        lambda: not Message.objects.filter(pk__in=late_ids).exists(),
        what="the worker to delete the late messages",
    )
    assert Message.objects.filter(pk=bruno_message).exists()
    log = celery_worker.log.read_text(errors="replace")[log_start:]
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert "messaging.erase_leftovers" in log
