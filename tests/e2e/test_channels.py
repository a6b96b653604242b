"""E-mail, SMS and Web Push end to end: the API accepts a message, a real Celery worker sends it
through the channel's adapter to the fake provider (over SMTP and HTTP on loopback), and the
message ends in the status the provider's answer calls for. Delivered content is read back at
the fake (decrypted, for Web Push)."""

from __future__ import annotations

import urllib.parse
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.services import channel_credentials_set
from campaigns.models import Campaign
from messaging import delivery
from messaging.models import Message, MessageEvent, Subscription

from .conftest import Worker, wait_for

pytestmark = pytest.mark.e2e


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


@pytest.fixture
def channel_app(live_app, fake_providers):
    """The e2e application with the fakes' e-mail and SMS credentials, and VAPID keys made as
    `set_channel_credentials` makes them."""
    for channel, values in (
        ("Email", dict(fake_providers.email_credentials().values)),
        ("SMS", dict(fake_providers.sms_credentials().values)),
        ("WebPush", {"subject": "mailto:e2e@signal.test"}),
    ):
        channel_credentials_set(application=live_app, channel=channel, values=values)
    return live_app


def register(app, type_: str, token: str, **extra) -> str:
    response = api(app.client_key).post(
        "/api/v1/subscriptions", {"type": type_, "token": token, **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["channel_ready"] is True
    return response.json()["id"]


def send(app, **body) -> list[str]:
    body.setdefault("title", "Hello")
    body.setdefault("body", "World")
    response = api(app.server_key).post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return [m["id"] for m in response.json()["messages"]]


def finished(ids, statuses=("successful", "failed", "received")):
    def check():
        rows = list(Message.objects.filter(pk__in=ids).values_list("status", flat=True))
        return len(rows) == len(ids) and all(s in statuses for s in rows)

    return check


def detail(app, message_id: str) -> dict:
    return api(app.server_key).get(f"/api/v1/messages/{message_id}").json()


def attempt_codes(message_id: str) -> list:
    events = MessageEvent.objects.filter(message_id=message_id, type="attempt").order_by("at")
    return [event.details.get("error_code") for event in events]


def address(kind: str = "user") -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}@example.com"


# --- E-mail -----------------------------------------------------------------------------------


def test_email_arrives_multipart_with_the_parts(channel_app, fake_providers):
    to = address()
    subscription_id = register(channel_app, "Email", to)
    [message_id] = send(
        channel_app,
        subscription_id=subscription_id,
        title="Your receipt",
        body="Plain text body",
        email={"subject": "Receipt #42", "html": "<p>HTML <b>body</b></p>", "from_name": "Shop"},
    )
    wait_for(finished([message_id]), what="the e-mail to be sent")
    assert detail(channel_app, message_id)["status"] == "successful"

    [mail] = fake_providers.smtp_messages(to)
    assert mail["subject"] == "Receipt #42"
    assert "Plain text body" in mail["text"]
    assert "<b>body</b>" in mail["html"]
    assert "Shop" in mail["from"]
    # A one-off message is not bulk mail: no List-Unsubscribe.
    assert mail["list_unsubscribe"] is None and mail["list_unsubscribe_post"] is None


def test_email_bounce_disables_the_address(channel_app):
    subscription_id = register(channel_app, "Email", address("bounce"))
    [message_id] = send(channel_app, subscription_id=subscription_id)
    wait_for(finished([message_id]), what="the e-mail to fail")

    message = detail(channel_app, message_id)
    assert message["status"] == "failed"
    assert message["error"]["code"] == "token_invalid"
    assert message["error"]["permanent"] is True
    subscription = Subscription.objects.get(pk=subscription_id)
    assert not subscription.enabled and subscription.disabled_reason == "token_invalid"


def test_email_deferred_is_retried_and_delivered(channel_app, fake_providers):
    to = address("flaky1")
    subscription_id = register(channel_app, "Email", to)
    [message_id] = send(channel_app, subscription_id=subscription_id)
    wait_for(finished([message_id]), what="the e-mail to be retried and sent")

    message = detail(channel_app, message_id)
    assert message["status"] == "successful"
    assert message["attempts"] == 2
    first, second = attempt_codes(message_id)
    assert first and "451" in first  # the relay's own code is in the attempt's event
    assert second is None
    assert len(fake_providers.smtp_messages(to)) == 1


def test_campaign_email_has_one_click_unsubscribe_that_works(channel_app, fake_providers):
    to = address()
    subscription_id = register(channel_app, "Email", to, tags={"list": "news"})
    response = api(channel_app.server_key).post(
        "/api/v1/campaigns",
        {
            "name": "newsletter",
            "title": "News",
            "body": "This week",
            "targeting_criteria": {"tags": {"list": "news"}, "channels": ["Email"]},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    campaign_id = response.json()["id"]
    assert (
        api(channel_app.server_key).post(f"/api/v1/campaigns/{campaign_id}/execute").status_code
        == 202
    )
    wait_for(
        lambda: Campaign.objects.get(pk=campaign_id).status == "completed",
        what="the campaign to complete",
    )

    [mail] = fake_providers.smtp_messages(to)
    assert mail["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    url = mail["list_unsubscribe"].strip("<>")
    path = urllib.parse.urlsplit(url).path
    assert url.startswith("http")

    # What a mailbox provider's "unsubscribe" button does (RFC 8058): a POST, no cookies.
    answer = APIClient().post(path, "List-Unsubscribe=One-Click",
                              content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert answer.status_code == 200
    subscription = Subscription.objects.get(pk=subscription_id)
    assert not subscription.enabled and subscription.disabled_reason == "unsubscribed"
    # A forged link changes nothing.
    assert APIClient().post(path[:-3] + "xyz").status_code == 404


# --- SMS --------------------------------------------------------------------------------------


def test_sms_is_sent_and_the_delivery_report_marks_it_received(channel_app, fake_providers):
    number = fake_providers.sms_number("delivered")
    subscription_id = register(channel_app, "SMS", number)
    [message_id] = send(channel_app, subscription_id=subscription_id, sms={"text": "Code 1234"})
    # The fake reports `delivered` to the status callback (PUBLIC_URL is the live server).
    wait_for(
        lambda: Message.objects.get(pk=message_id).status == "received",
        what="the delivery report to mark the SMS received",
    )
    [sms] = fake_providers.sms_messages(number)
    assert sms["Body"] == "Code 1234"
    message = detail(channel_app, message_id)
    assert message["status"] == "received"
    reports = MessageEvent.objects.filter(message_id=message_id, type="report")
    assert "delivered" in {event.details["provider_status"] for event in reports}


def test_sms_undelivered_report_is_an_event_not_a_failure(channel_app, fake_providers):
    number = fake_providers.sms_number("undelivered")
    subscription_id = register(channel_app, "SMS", number)
    [message_id] = send(channel_app, subscription_id=subscription_id)
    wait_for(
        lambda: MessageEvent.objects.filter(
            message_id=message_id, type="report", details__provider_status="undelivered"
        ).exists(),
        what="the undelivered report",
    )
    assert Message.objects.get(pk=message_id).status == "successful"


def test_sms_invalid_number_disables_the_subscription(channel_app, fake_providers):
    subscription_id = register(channel_app, "SMS", fake_providers.sms_number("invalid"))
    [message_id] = send(channel_app, subscription_id=subscription_id)
    wait_for(finished([message_id]), what="the SMS to fail")
    message = detail(channel_app, message_id)
    assert message["error"]["code"] == "token_invalid"
    assert attempt_codes(message_id) == ["21211"]
    assert not Subscription.objects.get(pk=subscription_id).enabled


def test_sms_throttled_is_retried_after_back_off(channel_app, fake_providers):
    subscription_id = register(channel_app, "SMS", fake_providers.sms_number("flaky"))
    [message_id] = send(channel_app, subscription_id=subscription_id)
    wait_for(finished([message_id]), what="the SMS to be retried and sent")
    message = detail(channel_app, message_id)
    assert message["status"] in ("successful", "received")
    assert message["attempts"] >= 2
    assert attempt_codes(message_id)[-1] is None


# --- Web Push ---------------------------------------------------------------------------------


def test_web_push_payload_arrives_encrypted_and_decrypts(channel_app, fake_providers):
    browser = fake_providers.webpush_subscribe()
    subscription_id = register(channel_app, "WebPush", browser["endpoint"], keys=browser["keys"])
    [message_id] = send(
        channel_app,
        subscription_id=subscription_id,
        title="Sale",
        body="Starts now",
        data={"id": 7},
        priority="high",
        ttl=600,
        collapse_id="sale",
        web_push={"url": "https://shop.example.com/sale", "icon": "https://shop.example.com/i.png"},
    )
    wait_for(finished([message_id]), what="the web push to be sent")
    assert detail(channel_app, message_id)["status"] == "successful"

    [received] = fake_providers.webpush_messages(browser["endpoint"])
    payload = received["payload"]
    assert payload["title"] == "Sale" and payload["body"] == "Starts now"
    assert payload["data"] == {"id": 7}
    assert payload["url"] == "https://shop.example.com/sale"
    assert (received["urgency"], received["ttl"], received["topic"]) == ("high", 600, "sale")


def test_web_push_gone_endpoint_disables_the_subscription(channel_app, fake_providers):
    browser = fake_providers.webpush_subscribe(prefix="gone")
    subscription_id = register(channel_app, "WebPush", browser["endpoint"], keys=browser["keys"])
    [message_id] = send(channel_app, subscription_id=subscription_id)
    wait_for(finished([message_id]), what="the web push to fail")
    assert detail(channel_app, message_id)["error"]["code"] == "token_invalid"
    assert not Subscription.objects.get(pk=subscription_id).enabled


def test_web_push_unavailable_is_retried(channel_app, fake_providers):
    browser = fake_providers.webpush_subscribe(prefix="flaky1")
    subscription_id = register(channel_app, "WebPush", browser["endpoint"], keys=browser["keys"])
    [message_id] = send(channel_app, subscription_id=subscription_id)
    wait_for(finished([message_id]), what="the web push to be retried and sent")
    message = detail(channel_app, message_id)
    assert message["status"] == "successful" and message["attempts"] == 2
    assert len(fake_providers.webpush_messages(browser["endpoint"])) == 1


def test_channel_without_credentials_fails_channel_unavailable(live_app):
    # live_app has push credentials only.
    response = api(live_app.client_key).post(
        "/api/v1/subscriptions", {"type": "Email", "token": address()}, format="json"
    )
    assert response.json()["channel_ready"] is False
    [message_id] = send(live_app, subscription_id=response.json()["id"])
    wait_for(finished([message_id]), what="the e-mail to fail")
    error = detail(live_app, message_id)["error"]
    assert error["code"] == "channel_unavailable" and error["permanent"] is True


# --- A worker killed in the middle ------------------------------------------------------------


def test_worker_killed_mid_batch_loses_no_message_of_any_channel(
    channel_app, worker_env, celery_worker, tmp_path, fake_providers
):
    # Slow iOS tokens (the fake answers after 2 s) hold batches in flight when the kill lands;
    # the other channels' messages share those batches and the ones still queued.
    ids = []
    slow = [register(channel_app, "iOSPush", f"5104{i:060x}") for i in range(20)]
    emails = [address() for _ in range(30)]
    numbers = [fake_providers.sms_number("delivered") for _ in range(30)]
    browsers = [fake_providers.webpush_subscribe() for _ in range(30)]
    targets = [
        *slow,
        *(register(channel_app, "Email", to) for to in emails),
        *(register(channel_app, "SMS", number) for number in numbers),
        *(register(channel_app, "WebPush", b["endpoint"], keys=b["keys"]) for b in browsers),
    ]
    ids = send(channel_app, subscription_ids=targets)
    wait_for(
        lambda: fake_providers.apns_stats()["requests"] > 0,
        what="a worker to be sending",
    )
    celery_worker.kill()
    assert Message.objects.filter(pk__in=ids, status="pending").exists(), (
        "the kill came too late to test anything"
    )

    replacement = Worker(worker_env, tmp_path / "worker2.log", "e2e-restarted").start()
    try:

        def swept_and_done():
            delivery.pending_sweep()
            return finished(ids, ("successful", "received"))()

        wait_for(swept_and_done, timeout=90, what="every message to be delivered")
    finally:
        replacement.stop()
        celery_worker.start()

    # Every address got its message (a message in flight at the kill may arrive twice).
    assert all(fake_providers.smtp_messages(to) for to in emails)
    assert all(fake_providers.sms_messages(number) for number in numbers)
    assert all(fake_providers.webpush_messages(b["endpoint"]) for b in browsers)
