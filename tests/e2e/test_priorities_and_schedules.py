"""Through a real Celery worker: priorities pick the queue, retries run on the retry queue, and
scheduled messages wait for their time and are sent by the sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from messaging import delivery
from messaging.models import Message, MessageEvent, MessageStatus, Subscription
from messaging.services.subscriptions import subscription_register

from .conftest import wait_for

pytestmark = pytest.mark.e2e


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def subscribe(app, type_: str, token: str) -> Subscription:
    subscription, _ = subscription_register(application=app, actor="test", type=type_, token=token)
    return subscription


def send(app, **body) -> list[str]:
    body = {"title": "Hello", "body": "World", **body}
    response = api(app.server_key).post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return [m["id"] for m in response.json()["messages"]]


def finished(ids):
    def check():
        statuses = list(Message.objects.filter(pk__in=ids).values_list("status", flat=True))
        return len(statuses) == len(ids) and MessageStatus.PENDING not in statuses

    return check


def attempt_queues(message_id) -> list[str]:
    return [
        event.details.get("queue")
        for event in MessageEvent.objects.filter(message_id=message_id, type="attempt").order_by(
            "at", "id"
        )
    ]


def test_high_priority_goes_to_the_critical_queue(live_app, fake_providers):
    ios = subscribe(live_app, "iOSPush", "ab" * 32)
    android = subscribe(live_app, "AndroidPush", "fcm-prio:" + "P" * 140)
    high = send(live_app, subscription_ids=[str(ios.pk), str(android.pk)], priority="high")
    normal = send(live_app, subscription_ids=[str(ios.pk), str(android.pk)])
    wait_for(finished(high + normal), what="all four messages to finish")

    for message_id in high:
        assert attempt_queues(message_id) == ["critical"]
    for message_id in normal:
        assert attempt_queues(message_id) == ["messages"]
    assert set(Message.objects.filter(pk__in=high + normal).values_list("status", flat=True)) == {
        "successful"
    }
    assert (fake_providers.apns_stats()["requests"], fake_providers.fcm_stats()["requests"]) == (
        2,
        2,
    )


def test_retries_run_on_the_retry_queue(live_app):
    flaky = subscribe(live_app, "iOSPush", "f1a0" + "7" * 60)
    steady = subscribe(live_app, "iOSPush", "cd" * 32)
    flaky_id, steady_id = send(live_app, subscription_ids=[str(flaky.pk), str(steady.pk)])
    wait_for(finished([flaky_id, steady_id]), timeout=45, what="the flaky message to finish")

    assert Message.objects.get(pk=flaky_id).status == MessageStatus.SUCCESSFUL
    assert attempt_queues(flaky_id) == ["messages", "retry", "retry"]
    # Sent in the same first batch: its attempt keeps the queue it ran on.
    assert attempt_queues(steady_id) == ["messages"]


def test_a_scheduled_message_waits_and_is_sent_by_the_sweep(live_app, fake_providers):
    ios = subscribe(live_app, "iOSPush", "ef" * 32)
    android = subscribe(live_app, "AndroidPush", "fcm-later:" + "L" * 140)
    send_after = timezone.now() + timedelta(seconds=2)
    [normal] = send(live_app, subscription_id=str(ios.pk), send_after=send_after.isoformat())
    [high] = send(
        live_app,
        subscription_id=str(android.pk),
        send_after=send_after.isoformat(),
        priority="high",
    )
    assert Message.objects.get(pk=normal).enqueued_at is None  # left to the sweep

    def swept_and_done():
        # Beat does not run in the tests; sweep as often as it would, and more.
        delivery.pending_sweep()
        if timezone.now() < send_after:
            assert Message.objects.filter(pk__in=[normal, high], status="pending").count() == 2
        return finished([normal, high])()

    wait_for(swept_and_done, timeout=30, what="the scheduled messages to be sent")

    for message_id in (normal, high):
        message = Message.objects.get(pk=message_id)
        assert message.status == MessageStatus.SUCCESSFUL
        assert message.sent_at >= send_after
        first_attempt = message.events.filter(type="attempt").order_by("at").first()
        assert first_attempt.at >= send_after
    assert attempt_queues(normal) == ["messages"]
    assert attempt_queues(high) == ["critical"]
    assert (fake_providers.apns_stats()["requests"], fake_providers.fcm_stats()["requests"]) == (
        1,
        1,
    )
