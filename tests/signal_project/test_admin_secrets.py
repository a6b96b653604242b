"""No admin page carries a stored secret: every registered model's changelist, add page,
change pages, history, delete confirmation and extra object pages, and every changelist
action's first response, are searched for the secrets stored by the fixtures."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.db import connection

from accounts import credentials
from accounts.services import channel_credentials_set, channel_credentials_store
from campaigns import services as campaign_services
from campaigns.schedules import schedule_clean
from messaging.services.messages import Content, Delivery, message_send
from messaging.services.subscriptions import subscription_register
from templates_app import services as template_services
from tests.admin_pages import p8_key, pem_body_lines, service_account
from tests.conftest import application_with_keys, subscription_create

pytestmark = pytest.mark.django_db

OBJECTS_PER_MODEL = 5
# A valid P-256 public key (RFC 8291's example user agent key), as a browser gives p256dh.
TEST_P256DH = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)


@pytest.fixture
def secrets(db) -> list[str]:
    """An application with APNs and FCM credentials, keys, a subscription, a message, a
    template and campaigns (a beat task too): something on every page. Returns what must
    never appear on one."""
    p8, account = p8_key(), service_account()
    made = application_with_keys("secretive")
    application = made.application
    channel_credentials_store(
        application=application,
        channel="iOSPush",
        values=credentials.apns_credentials_clean(
            private_key=p8, key_id="KEY1234567", team_id="TEAM123456", topic="com.example.app"
        ),
    )
    channel_credentials_set(
        application=application, channel="AndroidPush", values={"service_account": account}
    )
    email = channel_credentials_set(
        application=application,
        channel="Email",
        values={"host": "smtp.example.com", "username": "relay", "password": "smtp-Secret-9x",
                "from_address": "news@example.com"},
    )  # fmt: skip
    sms = channel_credentials_set(
        application=application,
        channel="SMS",
        values={"account_sid": "AC" + "1" * 32, "auth_token": "twilioSecretToken77",
                "from": "+15005550006"},
    )  # fmt: skip
    vapid = channel_credentials_set(application=application, channel="WebPush", values={})
    browser_keys = {"p256dh": TEST_P256DH, "auth": "c2VjcmV0QXV0aEtleTE2Qg"}
    subscription_register(
        application=application,
        actor="test",
        type="WebPush",
        token="https://fcm.googleapis.com/fcm/send/secret-endpoint-1",
        keys=browser_keys,
    )
    subscription = subscription_create(application, external_user_id="alice")
    message_send(
        application=application,
        subscriptions=[subscription],
        content=Content(title="Hello", body="World"),
        delivery=Delivery(),
    )
    version = template_services.template_create(
        application=application, name="welcome", title_template="Hi", body_template="{{name}}"
    )
    campaign_services.campaign_create(application=application, name="once", title="Sale")
    campaign_services.campaign_create(
        application=application,
        name="weekly",
        template=version.template,
        schedule=schedule_clean({"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"}),
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT token, keys FROM messaging_subscription")
        ciphertexts = [value for row in cursor.fetchall() for value in row if value]
        cursor.execute("SELECT values FROM accounts_channelcredential")
        ciphertexts += [row[0] for row in cursor.fetchall()]
    return [
        *pem_body_lines(p8),
        *pem_body_lines(account["private_key"]),
        *ciphertexts,
        made.server.raw,
        made.client.raw,
        made.server.api_key.digest,
        subscription.token,
        email["password"],
        sms["auth_token"],
        vapid["vapid_private_key"],
        browser_keys["auth"],
        "secret-endpoint-1",
    ]


def _admin_urls() -> list[tuple[str, str]]:
    """(url, what) for every page of every registered model, objects' pages included."""
    urls = []
    for model, model_admin in admin.site._registry.items():
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        urls += [(base, "changelist"), (f"{base}add/", "add")]
        object_pages = [
            str(pattern.pattern).lstrip("^").rstrip("$")
            for pattern in model_admin.get_urls()
            if "<path:object_id>" in str(pattern.pattern)
        ]
        for pk in model._default_manager.values_list("pk", flat=True)[:OBJECTS_PER_MODEL]:
            urls += [
                (base + page.replace("<path:object_id>", str(pk)), page) for page in object_pages
            ]
    return urls


def _assert_free_of(html: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in html, f"{where} shows a secret: {secret[:20]}…"
    assert "PRIVATE KEY" not in html, where


def test_no_admin_page_shows_a_stored_secret(admin_client, secrets):
    urls = _admin_urls()
    assert any("/accounts/application/" in url and "change" in url for url, _ in urls)
    assert any(url.endswith("/execute/") for url, _ in urls)

    for url, what in urls:
        response = admin_client.get(url, follow=True)
        assert response.status_code in (200, 403), (url, response.status_code)
        _assert_free_of(response.content.decode(), secrets, f"{url} ({what})")


def test_no_changelist_action_shows_a_stored_secret(admin_client, secrets):
    """Each action's first answer (a confirmation page, or the changelist after it acted),
    with every object of its model selected."""
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        selected = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
        if not selected:
            continue
        page = admin_client.get(url).content.decode()
        for action in re.findall(r'<option value="(\w+)"', page):
            response = admin_client.post(
                url, {"action": action, "_selected_action": selected}, follow=True
            )
            assert response.status_code == 200, (url, action)
            _assert_free_of(response.content.decode(), secrets, f"{url} action {action}")
