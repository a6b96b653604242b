"""GET /applications/current: the calling key's application, which channels can send, and the
VAPID public key a browser subscribes with."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import ChannelCredential
from accounts.services import api_key_revoke, channel_credentials_remove, channel_credentials_set
from core.channels import CHANNELS
from tests.assertions import assert_error
from tests.conftest import api_client

URL = "/api/v1/applications/current"
EMAIL = {"host": "smtp.example.com", "from_address": "news@example.com"}
SMS = {"account_sid": "AC" + "1" * 32, "auth_token": "twilio-token-1", "from": "+15005550006"}

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("scope", ["server", "client"])
def test_either_key_gets_its_application(app, other_app, scope):
    response = api_client(getattr(app, scope).raw).get(URL)

    assert response.status_code == 200, response.content
    assert response.json() == {
        "id": str(app.application.pk),
        "name": "first",
        "channels": dict.fromkeys(CHANNELS, False) | {"InAppMessage": True},
        "identity_verification": False,
        "retention_days": 90,
        "allowed_origins": [],
        "frequency_cap": None,
        "web_push_public_key": None,
    }


def test_the_answer_is_the_keys_own_application(app, other_app):
    channel_credentials_set(application=other_app.application, channel="Email", values=EMAIL)

    body = api_client(other_app.client.raw).get(URL).json()

    assert body["id"] == str(other_app.application.pk) and body["name"] == "second"
    assert body["channels"]["Email"] is True
    assert api_client(app.client.raw).get(URL).json()["channels"]["Email"] is False


def test_channels_show_what_has_credentials_and_an_adapter(app, client_api, settings):
    channel_credentials_set(application=app.application, channel="Email", values=EMAIL)
    channel_credentials_set(application=app.application, channel="SMS", values=SMS)
    ChannelCredential.objects.create(
        application=app.application, channel="InAppMessage", values={"x": 1}, set_at=timezone.now()
    )
    settings.CHANNEL_ADAPTERS = {"SMS": None}  # SMS turned off

    channels = client_api.get(URL).json()["channels"]

    assert list(channels) == list(CHANNELS)
    # In-app messages are written here: ready without an adapter or credentials.
    assert channels == dict.fromkeys(CHANNELS, False) | {"Email": True, "InAppMessage": True}


def test_the_web_push_public_key_appears_once_web_push_has_credentials(app, client_api):
    assert client_api.get(URL).json()["web_push_public_key"] is None

    stored = channel_credentials_set(application=app.application, channel="WebPush", values={})
    body = client_api.get(URL).json()

    assert body["web_push_public_key"] == stored["vapid_public_key"]
    assert body["channels"]["WebPush"] is True
    assert stored["vapid_private_key"] not in str(body)

    channel_credentials_remove(application=app.application, channel="WebPush", actor="test")
    body = client_api.get(URL).json()
    assert body["web_push_public_key"] is None and body["channels"]["WebPush"] is False


def test_the_public_key_follows_replaced_credentials(app, server_api):
    first = channel_credentials_set(application=app.application, channel="WebPush", values={})
    second = channel_credentials_set(application=app.application, channel="WebPush", values={})

    assert first["vapid_public_key"] != second["vapid_public_key"]
    assert server_api.get(URL).json()["web_push_public_key"] == second["vapid_public_key"]


def test_without_a_key_it_is_401(anonymous_api):
    assert_error(anonymous_api.get(URL), 401, "authentication_failed")


@pytest.mark.parametrize("raw", ["sk_not-a-real-key", "ck_", "garbage"])
def test_with_an_unknown_key_it_is_401(app, raw):
    assert_error(api_client(raw).get(URL), 401, "authentication_failed")


def test_with_a_revoked_key_it_is_401(app):
    api_key_revoke(api_key=app.client.api_key, actor="test")

    assert_error(api_client(app.client.raw).get(URL), 401, "authentication_failed")


def test_only_get_is_allowed(server_api):
    assert_error(server_api.post(URL, {}, format="json"), 405, "method_not_allowed")
