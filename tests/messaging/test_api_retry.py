"""POST /messages/{id}/retry: a failed message sent again as a new message, and the message
admin's retry and cancel actions."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from django.db import connections, transaction
from django.test import Client

from accounts.models import MessageQuota
from accounts.services import channel_credentials_store
from messaging import delivery
from messaging.models import Message, MessageEvent, MessageStatus
from messaging.services.messages import (
    Content,
    Delivery,
    message_retry,
    message_send,
    messages_cancel,
)
from messaging.services.subscriptions import subscription_disable
from messaging.signals import message_statuses_changed
from tests.assertions import assert_error
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages"
IOS_OK = "ab" * 32


def url(message_id) -> str:
    return f"{URL}/{message_id}/retry"


def stored(application, subscription, **options) -> Message:
    [message] = message_send(
        application=application,
        subscriptions=[subscription],
        content=Content(
            title="Hi", body="There", data={"k": "v"}, parts={"email": {"subject": "Hello"}}
        ),
        delivery=Delivery(priority="high", ttl=600, collapse_id="promo-1"),
        **options,
    ).messages
    return message


def failed(message: Message) -> Message:
    message.fail()
    message.error_code = "channel_unavailable"
    message.save(update_fields=["status", "error_code"])
    return message


@pytest.fixture
def sub(app):
    return subscription_create(app.application, token=IOS_OK)


def test_a_failed_message_is_sent_again_once_its_channel_works(server_api, app, providers):
    """The operator's case: no credentials, the message fails; credentials stored; retried,
    the new message is delivered and the failed one stays as it was."""
    application = app.application
    subscription = subscription_create(application, token=IOS_OK)
    original = stored(application, subscription)
    delivery.deliver_batch([str(original.pk)])
    original.refresh_from_db()
    assert (original.status, original.error_code) == ("failed", "channel_unavailable")
    channel_credentials_store(
        application=application,
        channel="iOSPush",
        values=dict(providers.apns_credentials().values),
    )

    response = server_api.post(url(original.pk))

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["retry_of"] == str(original.pk)
    assert body["status"] == "pending"
    assert body["id"] != str(original.pk)
    assert (body["subscription_id"], body["title"], body["body"], body["data"]) == (
        str(subscription.pk),
        "Hi",
        "There",
        {"k": "v"},
    )
    retry = Message.objects.get(pk=body["id"])
    assert (retry.priority, retry.ttl, retry.collapse_id) == ("high", 600, "promo-1")
    assert retry.enqueued_at is not None

    report = delivery.deliver_batch([str(retry.pk)])

    assert report.outcomes == Counter({"successful": 1})
    retry.refresh_from_db()
    assert retry.status == MessageStatus.SUCCESSFUL
    assert providers.apns_stats()["requests"] == 1
    original.refresh_from_db()
    assert original.status == MessageStatus.FAILED
    detail = server_api.get(f"{URL}/{retry.pk}").json()
    assert detail["retry_of"] == str(original.pk)
    assert detail["events"][0]["details"] == {
        "actor": f"api_key:{app.server.api_key.prefix}",
        "retry_of": str(original.pk),
    }


def test_the_retry_keeps_the_content_and_the_campaign_but_not_the_run(app, sub):
    campaign, run = uuid.uuid4(), uuid.uuid4()
    original = failed(stored(app.application, sub, campaign_id=campaign, campaign_run_id=run))
    Message.objects.filter(pk=original.pk).update(category="receipts")
    original.refresh_from_db()

    retry = message_retry(message=original, actor="test")

    assert (retry.campaign_id, retry.campaign_run_id, retry.retry_of) == (
        campaign,
        None,
        original.pk,
    )
    fields = ["channel", "title", "body", "data", "parts", "priority", "ttl", "collapse_id"]
    fields.append("category")
    assert {f: getattr(retry, f) for f in fields} == {f: getattr(original, f) for f in fields}
    assert retry.parts == {}  # an iOS message keeps no e-mail part


@pytest.mark.parametrize("status", ["pending", "successful", "received", "cancelled"])
def test_only_a_failed_message_can_be_retried(server_api, app, sub, status):
    message = stored(app.application, sub)
    Message.objects.filter(pk=message.pk).update(status=status)

    details = assert_error(server_api.post(url(message.pk)), 409, "invalid_transition")

    assert details == {"status": status}
    assert Message.objects.count() == 1


def test_a_message_to_a_disabled_subscription_is_not_retried(server_api, app, sub):
    message = failed(stored(app.application, sub))
    subscription_disable(subscription_id=sub.pk, reason="user_opt_out")

    details = assert_error(server_api.post(url(message.pk)), 409, "invalid_transition")

    assert details == {"status": "failed", "subscription_enabled": False}
    assert Message.objects.count() == 1


def test_a_message_is_retried_once_and_its_retry_may_be_retried(server_api, app, sub):
    message = failed(stored(app.application, sub))
    first = server_api.post(url(message.pk)).json()

    details = assert_error(server_api.post(url(message.pk)), 409, "invalid_transition")

    assert details == {"status": "failed", "retried_by": first["id"]}
    failed(Message.objects.get(pk=first["id"]))
    second = server_api.post(url(first["id"]))
    assert second.status_code == 202
    assert second.json()["retry_of"] == first["id"]
    assert Message.objects.count() == 3


def test_another_applications_message_is_not_found(other_server_api, app, sub):
    message = failed(stored(app.application, sub))

    response = other_server_api.post(url(message.pk))

    assert_error(response, 404, "not_found")
    assert str(message.pk).encode() not in response.content
    assert Message.objects.count() == 1


def test_an_unknown_message_is_not_found(server_api):
    assert_error(server_api.post(url(uuid.uuid4())), 404, "not_found")


def test_a_client_key_may_not_retry(client_api, app, sub):
    message = failed(stored(app.application, sub))

    assert_error(client_api.post(url(message.pk)), 403, "permission_denied")
    assert Message.objects.count() == 1


def test_a_retry_counts_against_the_quota(server_api, app, sub):
    message = failed(stored(app.application, sub))
    MessageQuota.objects.filter(application=app.application).update(daily_limit=1)

    response = server_api.post(url(message.pk))

    assert_error(response, 429, "quota_exceeded")
    assert int(response["Retry-After"]) > 0
    assert Message.objects.count() == 1


def test_the_same_idempotency_key_replays_the_retry(server_api, app, sub):
    message = failed(stored(app.application, sub))
    other = failed(stored(app.application, subscription_create(app.application)))

    first = server_api.post(url(message.pk), HTTP_IDEMPOTENCY_KEY="k1")
    again = server_api.post(url(message.pk), HTTP_IDEMPOTENCY_KEY="k1")
    elsewhere = server_api.post(url(other.pk), HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert_error(elsewhere, 422, "idempotency_conflict")
    assert Message.objects.filter(retry_of__isnull=False).count() == 1


# --- messages_cancel ----------------------------------------------------------------------


def test_cancel_moves_pending_messages_and_their_run_counters(app, sub):
    run = uuid.uuid4()
    pending = stored(app.application, sub, campaign_run_id=run)
    sent = stored(app.application, subscription_create(app.application))
    Message.objects.filter(pk=sent.pk).update(status=MessageStatus.SUCCESSFUL)
    seen: list[Counter] = []

    def listen(*, transitions, **_signal):
        seen.append(Counter(transitions))

    message_statuses_changed.connect(listen)
    try:
        count = messages_cancel(message_ids=[pending.pk, sent.pk], actor="operator")
    finally:
        message_statuses_changed.disconnect(listen)

    assert count == 1
    assert seen == [Counter({(run, "pending", "cancelled"): 1})]
    assert Message.objects.get(pk=pending.pk).status == MessageStatus.CANCELLED
    assert Message.objects.get(pk=sent.pk).status == MessageStatus.SUCCESSFUL
    assert MessageEvent.objects.filter(
        message_id=pending.pk, status="cancelled", details={"actor": "operator"}
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_cancel_leaves_a_row_a_worker_holds_alone(app):
    """A worker sending a message holds its row lock (delivery.claim); the cancel skips that
    row at once instead of waiting, and cancels the others."""
    held = stored(app.application, subscription_create(app.application))
    free = stored(app.application, subscription_create(app.application))
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
        count = messages_cancel(message_ids=[held.pk, free.pk], actor="operator")
    finally:
        release.set()
        thread.join(10)

    assert count == 1
    assert Message.objects.get(pk=held.pk).status == MessageStatus.PENDING
    assert Message.objects.get(pk=free.pk).status == MessageStatus.CANCELLED


# --- The message admin's actions ---------------------------------------------------------------


def action(client: Client, name: str, messages: list[Message]):
    return client.post(
        "/admin/messaging/message/",
        {
            "action": name,
            "_selected_action": [str(m.pk) for m in messages],
            "confirm": "yes",
        },
        follow=True,
    )


def notes(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_retry_action_retries_the_failed_and_counts_the_skipped(admin_client, app):
    application = app.application
    failing = [failed(stored(application, subscription_create(application))) for _ in range(2)]
    pending = stored(application, subscription_create(application))
    disabled = subscription_create(application)
    refused = failed(stored(application, disabled))
    subscription_disable(subscription_id=disabled.pk, reason="test")

    response = action(admin_client, "retry_failed", [*failing, pending, refused])

    assert response.status_code == 200
    assert notes(response) == [
        "Retried 2 failed message(s). Skipped 1 not failed and 1 whose subscription is "
        "disabled or that were retried already."
    ]
    retries = Message.objects.filter(retry_of__isnull=False)
    assert sorted(r.retry_of for r in retries) == sorted(m.pk for m in failing)
    assert (
        MessageEvent.objects.filter(message__in=retries, details__actor="admin:root").count() == 2
    )


def test_the_retry_action_asks_first(admin_client, app, sub):
    message = failed(stored(app.application, sub))

    response = admin_client.post(
        "/admin/messaging/message/",
        {"action": "retry_failed", "_selected_action": [str(message.pk)]},
    )

    assert response.status_code == 200
    assert b"Retry the messages" in response.content
    assert Message.objects.count() == 1


def test_the_cancel_action_cancels_the_pending(admin_client, app):
    application = app.application
    pending = [stored(application, subscription_create(application)) for _ in range(2)]
    done = failed(stored(application, subscription_create(application)))

    response = action(admin_client, "cancel_pending", [*pending, done])

    assert notes(response) == ["Cancelled 2 pending message(s)."]
    statuses = {m.pk: m.status for m in Message.objects.all()}
    assert [statuses[m.pk] for m in pending] == ["cancelled", "cancelled"]
    assert statuses[done.pk] == "failed"
