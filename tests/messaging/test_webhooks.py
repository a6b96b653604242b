"""The endpoints outsiders call without an API key: the SMS gateway's status callback (checked
by its X-Twilio-Signature) and the one-click unsubscribe link of campaign e-mails; and the
links (messaging.links) that hand them out."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode, urlsplit

import pytest
from django.core import signing
from django.test import Client

from accounts.services import application_create, channel_credentials_set
from adapters.sms import twilio_signature
from campaigns.models import CampaignRun
from campaigns.services import campaign_create
from messaging.links import (
    links_for,
    sms_status_callback_url,
    unsubscribe_subscription_id,
    unsubscribe_token,
    unsubscribe_url,
)
from messaging.models import Message, MessageEvent, MessageStatus, Subscription, SubscriptionEvent
from messaging.services.messages import Content, Delivery, message_send
from messaging.services.reports import SMS_PROVIDER
from tests.assertions import assert_error
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://signal.example.com"
AUTH_TOKEN = "twilio-auth-token-of-the-app"
SMS = {"account_sid": "AC" + "1" * 32, "auth_token": AUTH_TOKEN, "from": "+15005550006"}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.PUBLIC_URL = PUBLIC_URL


@pytest.fixture
def sms_app():
    application = application_create(name="sms")
    channel_credentials_set(application=application, channel="SMS", values=SMS)
    return application


def sent(application, type: str = "SMS", to: str = "+14155550100", status=None, **fields):
    """A message to a new subscription, as the worker left it (`successful` by default)."""
    subscription = subscription_create(application, type=type, token=to)
    [message] = message_send(
        application=application,
        subscriptions=[subscription],
        content=Content(title="Hi", body="Your code is 1234"),
        delivery=Delivery(),
        **fields,
    ).messages
    Message.objects.filter(pk=message.pk).update(
        status=status or MessageStatus.SUCCESSFUL, provider_id="SM" + "a" * 32
    )
    return Message.objects.get(pk=message.pk)


def callback(
    message_id,
    params: dict[str, str],
    *,
    token: str | None = AUTH_TOKEN,
    signed_url: str | None = None,
    signed_params: dict[str, str] | None = None,
    signature: str | None = None,
):
    """POSTs a status callback as the gateway does: form-encoded, signed over the URL it was
    given (the message's status_callback) and the parameters."""
    url = sms_status_callback_url(message_id)
    headers = {}
    if signature is None and token is not None:
        signature = twilio_signature(
            token, signed_url or url, signed_params if signed_params is not None else params
        )
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return Client().post(urlsplit(url).path, urlencode(params), content_type=FORM, headers=headers)


def report(message, status: str = "delivered", **extra: str) -> dict[str, str]:
    return {
        "MessageSid": message.provider_id,
        "MessageStatus": status,
        "AccountSid": SMS["account_sid"],
        **extra,
    }


def events(message) -> list[tuple[str, str, dict]]:
    return list(
        MessageEvent.objects.filter(message=message).values_list("type", "status", "details")
    )


# --- SMS status callback -----------------------------------------------------------------------


def test_delivered_marks_a_successful_sms_received(sms_app):
    message = sent(sms_app)

    response = callback(message.pk, report(message))

    assert response.status_code == 204, response.content
    assert response.content == b""
    message.refresh_from_db()
    assert message.status == MessageStatus.RECEIVED
    assert events(message) == [
        ("report", "", {"provider_status": "delivered", "MessageSid": message.provider_id}),
        ("status", "received", {"actor": SMS_PROVIDER}),
    ]


def test_a_repeated_delivered_report_is_recorded_but_moves_nothing(sms_app):
    message = sent(sms_app)

    assert callback(message.pk, report(message)).status_code == 204
    assert callback(message.pk, report(message)).status_code == 204

    assert [kind for kind, _status, _details in events(message)] == ["report", "status", "report"]
    assert Message.objects.get(pk=message.pk).status == MessageStatus.RECEIVED


def test_undelivered_with_an_error_code_is_an_event_and_leaves_the_status(sms_app):
    message = sent(sms_app)

    response = callback(
        message.pk, report(message, "undelivered", ErrorCode="30003", ErrorMessage="Unreachable")
    )

    assert response.status_code == 204
    assert Message.objects.get(pk=message.pk).status == MessageStatus.SUCCESSFUL
    assert events(message) == [
        (
            "report",
            "",
            {
                "provider_status": "undelivered",
                "MessageSid": message.provider_id,
                "ErrorCode": "30003",
                "ErrorMessage": "Unreachable",
            },
        )
    ]


@pytest.mark.parametrize("status", ["sent", "failed", "queued"])
def test_other_reports_are_events_only(sms_app, status):
    message = sent(sms_app)

    assert callback(message.pk, report(message, status)).status_code == 204

    assert Message.objects.get(pk=message.pk).status == MessageStatus.SUCCESSFUL
    assert [(kind, details["provider_status"]) for kind, _s, details in events(message)] == [
        ("report", status)
    ]


def test_delivered_on_a_failed_message_leaves_it_failed(sms_app):
    message = sent(sms_app, status=MessageStatus.FAILED)

    response = callback(message.pk, report(message))

    assert response.status_code == 204
    assert Message.objects.get(pk=message.pk).status == MessageStatus.FAILED
    assert [kind for kind, _status, _details in events(message)] == ["report"]


def test_the_older_sms_status_parameter_is_read_too(sms_app):
    message = sent(sms_app)
    params = {"MessageSid": message.provider_id, "SmsStatus": "delivered"}

    assert callback(message.pk, params).status_code == 204

    assert Message.objects.get(pk=message.pk).status == MessageStatus.RECEIVED


def test_a_delivered_campaign_message_moves_its_runs_counters(sms_app):
    campaign = campaign_create(application=sms_app, name="sms campaign", title="Hi")
    run = CampaignRun.objects.create(
        campaign=campaign, number=1, trigger="execute", targeted=1, successful=1
    )
    message = sent(sms_app, campaign_id=campaign.pk, campaign_run_id=run.pk)

    assert callback(message.pk, report(message)).status_code == 204

    run.refresh_from_db()
    assert (run.successful, run.received) == (0, 1)


def test_a_wrong_signature_is_403(sms_app):
    message = sent(sms_app)

    response = callback(message.pk, report(message), signature="bm90IHRoZSBzaWduYXR1cmU=")

    assert_error(response, 403, "permission_denied")
    assert events(message) == []
    assert Message.objects.get(pk=message.pk).status == MessageStatus.SUCCESSFUL


def test_no_signature_is_403(sms_app):
    message = sent(sms_app)

    assert_error(callback(message.pk, report(message), token=None), 403, "permission_denied")
    assert events(message) == []


def test_another_applications_auth_token_is_403(sms_app):
    other = application_create(name="other sms")
    channel_credentials_set(
        application=other, channel="SMS", values={**SMS, "auth_token": "other-apps-token"}
    )
    message = sent(sms_app)

    response = callback(message.pk, report(message), token="other-apps-token")

    assert_error(response, 403, "permission_denied")
    assert events(message) == []


def test_an_application_without_sms_credentials_takes_no_callback(db):
    application = application_create(name="no credentials")
    message = sent(application)

    assert_error(callback(message.pk, report(message)), 403, "permission_denied")


def test_the_signature_covers_the_parameters(sms_app):
    message = sent(sms_app)

    response = callback(message.pk, report(message), signed_params=report(message, "undelivered"))

    assert_error(response, 403, "permission_denied")
    assert events(message) == []


def test_the_signature_covers_the_url_the_gateway_was_given(sms_app):
    message = sent(sms_app)
    elsewhere = f"https://attacker.example/webhooks/sms/{message.pk}"

    assert_error(
        callback(message.pk, report(message), signed_url=elsewhere), 403, "permission_denied"
    )


def test_a_url_signed_with_the_default_port_written_out_is_valid(sms_app):
    message = sent(sms_app)
    with_port = f"{PUBLIC_URL}:443{urlsplit(sms_status_callback_url(message.pk)).path}"

    assert callback(message.pk, report(message), signed_url=with_port).status_code == 204


def test_without_public_url_the_request_own_address_is_what_is_signed(sms_app, settings):
    message = sent(sms_app)
    path = f"/webhooks/sms/{message.pk}"
    settings.PUBLIC_URL = ""
    params = report(message)

    response = Client().post(
        path,
        urlencode(params),
        content_type=FORM,
        headers={
            "X-Twilio-Signature": twilio_signature(AUTH_TOKEN, f"http://testserver{path}", params)
        },
    )

    assert response.status_code == 204


def test_an_unknown_message_is_404(sms_app):
    message_id = uuid.uuid4()

    assert_error(callback(message_id, {"MessageStatus": "delivered"}), 404, "not_found")


def test_a_message_of_another_channel_is_404(sms_app):
    message = sent(sms_app, type="Email", to="ann@example.com")

    assert_error(callback(message.pk, report(message)), 404, "not_found")
    assert events(message) == []


def test_a_callback_without_a_status_is_400(sms_app):
    message = sent(sms_app)

    response = callback(message.pk, {"MessageSid": message.provider_id})

    assert_error(response, 400, "validation_error")
    assert events(message) == []


def test_the_callback_takes_only_post(sms_app):
    message = sent(sms_app)
    path = urlsplit(sms_status_callback_url(message.pk)).path

    assert Client().get(path).status_code == 405
    assert Client().put(path).status_code == 405


def test_the_callback_needs_no_csrf_token(sms_app):
    message = sent(sms_app)
    params = report(message)
    url = sms_status_callback_url(message.pk)

    response = Client(enforce_csrf_checks=True).post(
        urlsplit(url).path,
        urlencode(params),
        content_type=FORM,
        headers={"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, params)},
    )

    assert response.status_code == 204


# --- Unsubscribe links -------------------------------------------------------------------------


@pytest.fixture
def email_subscription(db):
    return subscription_create(
        application_create(name="mail"), type="Email", token="ann@example.com"
    )


def test_an_unsubscribe_url_round_trips_to_its_subscription(email_subscription):
    url = unsubscribe_url(email_subscription.pk)

    assert url.startswith(f"{PUBLIC_URL}/unsubscribe/")
    token = url.removeprefix(f"{PUBLIC_URL}/unsubscribe/")
    assert token == unsubscribe_token(email_subscription.pk)
    assert unsubscribe_subscription_id(token) == str(email_subscription.pk)


def test_a_tampered_or_foreign_token_names_no_subscription(email_subscription):
    token = unsubscribe_token(email_subscription.pk)
    value, _sep, signature = token.rpartition(":")
    other = subscription_create(email_subscription.application, type="Email", token="b@ex.com")

    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")

    assert unsubscribe_subscription_id(f"{value}:{flipped}") is None
    assert unsubscribe_subscription_id(f"{other.pk}:{signature}") is None
    assert unsubscribe_subscription_id(str(email_subscription.pk)) is None
    assert unsubscribe_subscription_id(signing.Signer().sign(str(other.pk))) is None
    assert unsubscribe_subscription_id("") is None


def unsubscribe_path(subscription) -> str:
    return urlsplit(unsubscribe_url(subscription.pk)).path


def test_get_shows_a_form_and_unsubscribes_nobody(email_subscription):
    response = Client().get(unsubscribe_path(email_subscription))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert '<form method="post">' in page and "<button" in page
    email_subscription.refresh_from_db()
    assert email_subscription.enabled is True
    assert not SubscriptionEvent.objects.filter(kind=SubscriptionEvent.Kind.DISABLED).exists()


def test_post_unsubscribes(email_subscription):
    response = Client(enforce_csrf_checks=True).post(
        unsubscribe_path(email_subscription), "List-Unsubscribe=One-Click", content_type=FORM
    )

    assert response.status_code == 200
    assert "Unsubscribed" in response.content.decode()
    assert "<form" not in response.content.decode()
    email_subscription.refresh_from_db()
    assert (email_subscription.enabled, email_subscription.disabled_reason) == (
        False,
        "unsubscribed",
    )
    assert list(
        SubscriptionEvent.objects.filter(
            subscription=email_subscription, kind=SubscriptionEvent.Kind.DISABLED
        ).values_list("actor", "changes")
    ) == [("unsubscribe", {"reason": "unsubscribed"})]


def test_post_twice_is_fine_and_records_one_event(email_subscription):
    path = unsubscribe_path(email_subscription)

    assert Client().post(path).status_code == 200
    assert Client().post(path).status_code == 200

    assert (
        SubscriptionEvent.objects.filter(
            subscription=email_subscription, kind=SubscriptionEvent.Kind.DISABLED
        ).count()
        == 1
    )
    assert Subscription.objects.get(pk=email_subscription.pk).enabled is False


def test_get_after_unsubscribing_says_so_without_a_form(email_subscription):
    path = unsubscribe_path(email_subscription)
    Client().post(path)

    response = Client().get(path)

    assert response.status_code == 200
    assert "Unsubscribed" in response.content.decode()
    assert "<form" not in response.content.decode()


def test_only_the_named_subscription_is_unsubscribed(email_subscription):
    other = subscription_create(email_subscription.application, type="Email", token="b@ex.com")

    Client().post(unsubscribe_path(email_subscription))

    assert Subscription.objects.get(pk=other.pk).enabled is True


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_token_is_404(email_subscription, method):
    token = unsubscribe_token(email_subscription.pk)

    for bad in (token[:-2] + "xx", str(email_subscription.pk), "nonsense"):
        response = getattr(Client(), method)(f"/unsubscribe/{bad}")
        assert response.status_code == 404
        assert "not valid" in response.content.decode()

    assert Subscription.objects.get(pk=email_subscription.pk).enabled is True


def test_the_link_of_a_deleted_subscription_is_404(email_subscription):
    path = unsubscribe_path(email_subscription)
    email_subscription.delete()

    assert Client().get(path).status_code == 404
    assert Client().post(path).status_code == 404


# --- links_for ---------------------------------------------------------------------------------


def test_no_links_without_a_public_url(settings, sms_app):
    settings.PUBLIC_URL = ""

    assert links_for("Email") is None
    assert links_for("SMS") is None


def test_channels_without_links_have_none(sms_app):
    for channel in ("iOSPush", "AndroidPush", "WebPush", "KakaoTalk", "InAppMessage"):
        assert links_for(channel) is None


def test_a_campaign_email_gets_its_unsubscribe_url_and_a_one_off_email_none(sms_app):
    campaign = campaign_create(application=sms_app, name="mail campaign", title="Hi")
    run = CampaignRun.objects.create(campaign=campaign, number=1, trigger="execute")
    one_off = sent(sms_app, type="Email", to="ann@example.com")
    bulk = sent(
        sms_app,
        type="Email",
        to="bob@example.com",
        campaign_id=campaign.pk,
        campaign_run_id=run.pk,
    )

    links = links_for("Email")

    assert links(one_off) == {}
    assert links(bulk) == {"unsubscribe_url": unsubscribe_url(bulk.subscription_id)}
    token = links(bulk)["unsubscribe_url"].rpartition("/")[2]
    assert unsubscribe_subscription_id(token) == str(bulk.subscription_id)


def test_an_sms_gets_its_status_callback(sms_app):
    message = sent(sms_app)

    assert links_for("SMS")(message) == {
        "status_callback": f"{PUBLIC_URL}/webhooks/sms/{message.pk}"
    }
