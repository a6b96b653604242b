"""The channel-credentials admin: credentials come in as a JSON file, are checked by the same
service as the command's, never appear on a page, and `test_recipient` sends a real test
message through the channel's adapter (here to the fake providers, over the wire)."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.channel_test import TEST_BODY, TEST_TITLE
from accounts.credentials import fingerprint
from accounts.models import Application, ChannelCredential
from accounts.services import application_create, channel_credentials_set
from adapters import registry
from adapters.webpush import vapid_public_key_of
from fakes.process import running_fake_providers
from tests.admin_pages import p8_key, pem_body_lines, service_account

pytestmark = pytest.mark.django_db

ADD = "/admin/accounts/channelcredential/add/"
PASSWORD = "smtp-Secret-9x"
EMAIL = {"host": "smtp.example.com", "username": "relay", "password": PASSWORD,
         "from_address": "news@example.com"}  # fmt: skip
SMS = {"account_sid": "AC" + "1" * 32, "auth_token": "twilioSecretToken77", "from": "+15005550006"}


@pytest.fixture(scope="module")
def fakes():
    with running_fake_providers() as providers:
        yield providers


@pytest.fixture
def providers(fakes, settings):
    """The adapters of this process send to the fakes."""
    settings.SMS_ENDPOINT = fakes.sms_endpoint
    settings.SMTP_CA_FILE = fakes.ca_file
    settings.SMS_TIMEOUT = settings.EMAIL_TIMEOUT = settings.WEB_PUSH_TIMEOUT = 5.0
    assert "127.0.0.1" in settings.WEB_PUSH_ALLOWED_HOSTS
    registry.reset_adapters()
    yield fakes
    registry.reset_adapters()


@pytest.fixture
def application() -> Application:
    return application_create(name="admin credentials")


def upload(values, name: str = "credentials.json") -> SimpleUploadedFile:
    content = values if isinstance(values, bytes) else json.dumps(values).encode()
    return SimpleUploadedFile(name, content, content_type="application/json")


def change_url(row: ChannelCredential) -> str:
    return f"/admin/accounts/channelcredential/{row.pk}/change/"


def add(client, application, channel: str, values=None, recipient: str = "", **extra):
    data = {"application": str(application.pk), "channel": channel, "test_recipient": recipient}
    if values is not None:
        data["credentials_file"] = upload(values)
    return client.post(ADD, data | extra, follow=True)


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.content[:500]
    errors = response.context["adminform"].form.errors
    return {name: list(messages) for name, messages in errors.items()}


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


# --- Storing -----------------------------------------------------------------------------------


def test_the_add_page_loads(admin_client):
    response = admin_client.get(ADD)

    assert response.status_code == 200
    assert 'name="credentials_file"' in response.content.decode()
    assert 'name="test_recipient"' in response.content.decode()


def test_adding_uploads_the_file_and_stores_the_checked_credentials(admin_client, application):
    response = add(admin_client, application, "Email", EMAIL)

    assert response.status_code == 200
    assert response.redirect_chain and response.redirect_chain[-1][1] == 302
    row = ChannelCredential.objects.get()
    assert (row.application, row.channel) == (application, "Email")
    assert row.values == {**EMAIL, "port": 587, "security": "starttls", "from_name": ""}
    assert row.set_at is not None
    assert [level for level, _text in messages_of(response)] == ["success"]


def test_the_file_is_required_when_adding(admin_client, application):
    errors = form_errors(add(admin_client, application, "Email"))

    assert errors == {"credentials_file": ["Upload the channel's credentials file."]}
    assert not ChannelCredential.objects.exists()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{not json", "The file is not JSON: "),
        (b"\xff\xfe{}", "The credentials file is not UTF-8 text."),
        (b" " * (64 * 1024 + 1), "The credentials file is larger than 65536 bytes."),
        (b"[]", "Credentials must be a JSON object."),
        (
            json.dumps({"host": "smtp.example.com"}).encode(),
            "Email credentials need 'from_address'.",
        ),
        (
            json.dumps({**EMAIL, "port": 0}).encode(),
            'Email "port" must be a number from 1 to 65535.',
        ),
    ],
    ids=["not JSON", "not UTF-8", "too large", "not an object", "no from_address", "port 0"],
)
def test_a_file_that_cannot_be_used_is_a_form_error_and_creates_nothing(
    admin_client, application, content, error
):
    errors = form_errors(add(admin_client, application, "Email", content))

    assert list(errors) == ["credentials_file"]
    assert errors["credentials_file"][0].startswith(error), errors
    assert not ChannelCredential.objects.exists()


def test_a_channel_without_credentials_is_a_form_error(admin_client, application):
    errors = form_errors(add(admin_client, application, "InAppMessage", {}))

    assert errors == {"credentials_file": ["InAppMessage takes no credentials."]}
    assert not ChannelCredential.objects.exists()


@pytest.mark.parametrize(
    ("channel", "values"),
    [
        ("iOSPush", {"private_key": p8_key(), "key_id": "KEY1234567", "team_id": "TEAM123456",
                     "topic": "com.example.app"}),
        ("AndroidPush", {"service_account": service_account()}),
    ],
)  # fmt: skip
def test_push_channels_are_uploaded_here_too_and_their_secrets_never_shown(
    admin_client, application, channel, values
):
    """APNs and FCM credentials are channel rows like the others: this page takes them as a
    JSON file (the application's page takes the .p8 key and the service-account file)."""
    response = add(admin_client, application, channel, values)

    assert response.status_code == 200
    row = ChannelCredential.objects.get()
    assert (row.application_id, row.channel) == (application.pk, channel)
    if channel == "iOSPush":
        secret = values["private_key"]
        assert row.values == {**values, "auth": "token", "sandbox": False}
    else:
        secret = values["service_account"]["private_key"]
        assert row.values == values
    page = admin_client.get(f"/admin/accounts/channelcredential/{row.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    for line in pem_body_lines(secret):
        assert line not in body
    assert "fingerprint" in body


def test_an_empty_push_file_is_refused_rather_than_stored(admin_client, application):
    errors = form_errors(add(admin_client, application, "iOSPush", {}))

    assert "credentials_file" in errors, errors
    assert not ChannelCredential.objects.exists()


def test_a_second_row_for_the_same_channel_is_refused(admin_client, application):
    channel_credentials_set(application=application, channel="SMS", values=SMS)

    errors = form_errors(add(admin_client, application, "SMS", {**SMS, "auth_token": "other"}))

    assert errors and "credentials_file" not in errors
    assert ChannelCredential.objects.get().values["auth_token"] == SMS["auth_token"]


def test_webpush_empty_file_generates_keys_and_the_page_shows_only_the_public_key(
    admin_client, application
):
    add(admin_client, application, "WebPush", {})
    row = ChannelCredential.objects.get()
    assert vapid_public_key_of(row.values["vapid_private_key"]) == row.values["vapid_public_key"]

    page = admin_client.get(change_url(row)).content.decode()

    assert row.values["vapid_public_key"] in page
    assert row.values["vapid_private_key"] not in page
    assert fingerprint(row.values["vapid_private_key"]) in page


def test_the_change_page_never_shows_the_password(admin_client, application):
    add(admin_client, application, "Email", EMAIL)
    row = ChannelCredential.objects.get()

    response = admin_client.get(change_url(row))

    page = response.content.decode()
    assert response.status_code == 200
    assert PASSWORD not in page
    assert fingerprint(PASSWORD) in page and "smtp.example.com" in page
    assert "password (fingerprint)" in page
    assert PASSWORD not in admin_client.get("/admin/accounts/channelcredential/").content.decode()


def test_the_change_page_never_shows_the_sms_auth_token(admin_client, application):
    add(admin_client, application, "SMS", SMS)
    row = ChannelCredential.objects.get()

    page = admin_client.get(change_url(row)).content.decode()

    assert SMS["auth_token"] not in page
    assert fingerprint(SMS["auth_token"]) in page and SMS["account_sid"] in page


def test_uploading_again_on_the_change_page_replaces_the_credentials(admin_client, application):
    add(admin_client, application, "SMS", SMS)
    row = ChannelCredential.objects.get()
    other = application_create(name="elsewhere")

    response = admin_client.post(
        change_url(row),
        {
            "application": str(other.pk),  # disabled on change: the row is not moved
            "channel": "Email",
            "credentials_file": upload({**SMS, "auth_token": "rotatedToken88"}),
            "test_recipient": "",
        },
        follow=True,
    )

    assert response.redirect_chain, form_errors(response)
    [stored] = ChannelCredential.objects.all()
    assert (stored.pk, stored.application, stored.channel) == (row.pk, application, "SMS")
    assert stored.values["auth_token"] == "rotatedToken88"
    assert stored.set_at > row.set_at


def test_saving_the_change_page_without_a_file_keeps_the_credentials(admin_client, application):
    add(admin_client, application, "SMS", SMS)
    row = ChannelCredential.objects.get()

    response = admin_client.post(change_url(row), {"test_recipient": ""}, follow=True)

    assert response.redirect_chain, form_errors(response)
    stored = ChannelCredential.objects.get()
    assert stored.values == SMS and stored.set_at == row.set_at


def test_invalid_credentials_on_the_change_page_keep_the_stored_ones(admin_client, application):
    add(admin_client, application, "SMS", SMS)
    row = ChannelCredential.objects.get()

    response = admin_client.post(
        change_url(row), {"credentials_file": upload({**SMS, "from": "nope!"})}
    )

    assert form_errors(response)["credentials_file"][0].startswith('SMS "from" must be')
    assert ChannelCredential.objects.get().values == SMS


# --- Test messages -----------------------------------------------------------------------------


def test_an_sms_test_message_reaches_the_provider(admin_client, application, providers):
    number = providers.sms_number()

    response = add(
        admin_client, application, "SMS", dict(providers.sms_credentials().values), number
    )

    [(level, text)] = [m for m in messages_of(response) if "Test" in m[1]]
    assert level == "info"
    assert text.startswith("Test SMS message accepted by the provider (id SM")
    [received] = providers.sms_messages(number)
    assert received["Body"] == TEST_BODY and received["From"] == providers.sms_from
    assert received["sid"] in text


def test_an_sms_number_the_provider_refuses_shows_its_error(admin_client, application, providers):
    number = providers.sms_number("invalid")  # the fake's +15005551xxx: 400 21211

    response = add(
        admin_client, application, "SMS", dict(providers.sms_credentials().values), number
    )

    [(level, text)] = [m for m in messages_of(response) if "Test" in m[1]]
    assert level == "error"
    assert text.startswith("Test SMS message refused: ")
    assert "21211" in text or "not a valid phone number" in text
    assert ChannelCredential.objects.filter(channel="SMS").exists()  # stored all the same


def test_a_test_from_the_change_page_uses_the_stored_credentials(
    admin_client, application, providers
):
    add(admin_client, application, "SMS", dict(providers.sms_credentials().values))
    row = ChannelCredential.objects.get()
    number = providers.sms_number()
    assert providers.sms_messages(number) == []

    response = admin_client.post(change_url(row), {"test_recipient": number}, follow=True)

    assert any(level == "info" and "accepted" in text for level, text in messages_of(response))
    assert len(providers.sms_messages(number)) == 1


def test_an_email_test_message_reaches_the_relay(admin_client, application, providers):
    address = f"admin-test-{uuid.uuid4().hex[:12]}@example.com"
    values = dict(providers.email_credentials().values)

    response = add(admin_client, application, "Email", values, address)

    [(level, text)] = [m for m in messages_of(response) if "Test" in m[1]]
    assert level == "info", text
    assert text.startswith("Test Email message accepted by the provider")
    [received] = providers.smtp_messages(address)
    assert received["subject"] == TEST_TITLE
    assert TEST_BODY in received["text"]
    assert received["tls"] and received["auth"] == values["username"]


def test_an_email_relay_that_refuses_the_login_shows_its_error(
    admin_client, application, providers
):
    address = f"admin-test-{uuid.uuid4().hex[:12]}@example.com"
    values = dict(providers.email_credentials(password="wrong-password").values)

    response = add(admin_client, application, "Email", values, address)

    [(level, text)] = [m for m in messages_of(response) if "Test" in m[1]]
    assert level == "error" and text.startswith("Test Email message refused: "), text
    assert "wrong-password" not in text
    assert providers.smtp_messages(address) == []


def test_a_webpush_test_message_reaches_the_browsers_push_service(
    admin_client, application, providers
):
    subscription = providers.webpush_subscribe()

    response = add(admin_client, application, "WebPush", {}, json.dumps(subscription))

    [(level, text)] = [m for m in messages_of(response) if "Test" in m[1]]
    assert level == "info", text
    [received] = providers.webpush_messages(subscription["endpoint"])
    assert received["payload"]["title"] == TEST_TITLE
    assert received["payload"]["body"] == TEST_BODY


@pytest.mark.parametrize(
    ("recipient", "error"),
    [
        ("not json", 'For WebPush, paste the browser\'s subscription: {"endpoint", "keys"}.'),
        ('{"endpoint": "https://fcm.googleapis.com/fcm/send/x"}', 'needs "endpoint" and "keys"'),
        (
            json.dumps(
                {"endpoint": "https://evil.example/push", "keys": {"p256dh": "x", "auth": "y"}}
            ),
            "evil.example is not a push service host",
        ),
    ],
    ids=["not JSON", "no keys", "a host not allowed"],
)
def test_a_webpush_recipient_that_is_not_a_subscription_is_not_sent(
    admin_client, application, providers, recipient, error
):
    response = add(admin_client, application, "WebPush", {}, recipient)

    [(level, text)] = [m for m in messages_of(response) if "Test" in m[1]]
    assert level == "error" and text.startswith("Test not sent: ") and error in text, text
    assert ChannelCredential.objects.filter(channel="WebPush").exists()


def test_a_channel_without_an_adapter_cannot_send_a_test(
    admin_client, application, providers, settings
):
    settings.CHANNEL_ADAPTERS = {"SMS": None}  # turned off in this installation
    values = dict(providers.sms_credentials().values)

    response = add(admin_client, application, "SMS", values, "+821012345678")

    assert ("error", "Test not sent: No adapter sends SMS in this installation.") in (
        messages_of(response)
    )


def test_no_test_is_sent_without_a_recipient(admin_client, application, providers):
    before = providers.sms_stats()["requests"]

    response = add(admin_client, application, "SMS", dict(providers.sms_credentials().values), " ")

    assert not [m for m in messages_of(response) if "Test" in m[1]]
    assert providers.sms_stats()["requests"] == before
