"""Subscriptions and their channels through the API: `channel_ready` on every output, and Web
Push subscriptions (an endpoint on a push service's host, with the browser's keys)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import channel_credentials_remove, channel_credentials_set
from messaging.models import Subscription, SubscriptionEvent
from tests.assertions import assert_error
from tests.conftest import apns_token, subscription_create

URL = "/api/v1/subscriptions"
EMAIL = {"host": "smtp.example.com", "from_address": "news@example.com"}
# RFC 8291's example user agent public key: a valid P-256 point, as a browser gives p256dh.
P256DH = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "c2VjcmV0QXV0aEtleTE2Qg"  # 16 octets
ENDPOINT = "https://fcm.googleapis.com/fcm/send/"

pytestmark = pytest.mark.django_db


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def browser_keys() -> dict[str, str]:
    """Fresh keys, as a browser makes them for each subscription."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}


def endpoint(name: str = "") -> str:
    return ENDPOINT + (name or b64url(os.urandom(24)))


def raw_keys(subscription_id) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT keys FROM messaging_subscription WHERE id = %s", [subscription_id])
        return cursor.fetchone()[0]


# --- channel_ready -----------------------------------------------------------------------------


def test_channel_ready_follows_the_applications_credentials_everywhere(app, server_api):
    created = server_api.post(URL, {"type": "Email", "token": "ann@example.com"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["channel_ready"] is False
    subscription_id = created.json()["id"]
    assert server_api.get(f"{URL}/{subscription_id}").json()["channel_ready"] is False
    assert [s["channel_ready"] for s in server_api.get(URL).json()["results"]] == [False]

    channel_credentials_set(application=app.application, channel="Email", values=EMAIL)

    assert server_api.get(f"{URL}/{subscription_id}").json()["channel_ready"] is True
    assert [s["channel_ready"] for s in server_api.get(URL).json()["results"]] == [True]
    again = server_api.post(URL, {"type": "Email", "token": "ann@example.com"}, format="json")
    assert again.status_code == 200 and again.json()["channel_ready"] is True
    new = server_api.post(URL, {"type": "Email", "token": "bob@example.com"}, format="json")
    assert new.status_code == 201 and new.json()["channel_ready"] is True

    channel_credentials_remove(application=app.application, channel="Email", actor="test")

    assert server_api.get(f"{URL}/{subscription_id}").json()["channel_ready"] is False


def test_channel_ready_is_per_subscription_type_in_a_list(app, server_api):
    subscription_create(app.application, type="Email", token="ann@example.com")
    subscription_create(app.application, type="iOSPush", token=apns_token())
    channel_credentials_set(application=app.application, channel="Email", values=EMAIL)

    results = server_api.get(URL).json()["results"]

    assert {s["type"]: s["channel_ready"] for s in results} == {"Email": True, "iOSPush": False}


def test_channel_ready_is_read_once_per_list(app, server_api):
    channel_credentials_set(application=app.application, channel="Email", values=EMAIL)

    def queries_of_a_list_of(count: int) -> int:
        while Subscription.objects.count() < count:
            subscription_create(
                app.application, type="Email", token=f"u{Subscription.objects.count()}@ex.com"
            )
        with CaptureQueriesContext(connection) as captured:
            response = server_api.get(URL)
        assert len(response.json()["results"]) == count
        assert all(s["channel_ready"] for s in response.json()["results"])
        return len(captured)

    server_api.get(URL)  # the key's first use of the minute also records last_used_at
    assert queries_of_a_list_of(2) == queries_of_a_list_of(8)


# --- Web Push subscriptions --------------------------------------------------------------------


def register(api, token: str, keys: dict | None = None, **fields):
    body = {"type": "WebPush", "token": token, **fields}
    if keys is not None:
        body["keys"] = keys
    return api.post(URL, body, format="json")


def test_a_web_push_subscription_is_registered_with_its_keys_stored_encrypted(client_api):
    keys = {"p256dh": P256DH, "auth": AUTH}
    token = endpoint()

    response = register(client_api, token, keys)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["type"] == "WebPush" and body["token"] == token
    assert "keys" not in body
    assert P256DH not in response.content.decode() and AUTH not in response.content.decode()
    subscription = Subscription.objects.get()
    assert subscription.keys == keys
    raw = raw_keys(subscription.pk)
    assert raw and P256DH not in raw and AUTH not in raw
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


def test_keys_without_base64_padding_or_with_it_are_taken(client_api):
    padded = {"p256dh": P256DH + "=", "auth": AUTH + "=="}

    assert register(client_api, endpoint(), padded).status_code == 201


def test_the_detail_and_the_list_never_carry_the_keys(app, server_api):
    keys = browser_keys()
    subscription_id = register(server_api, endpoint(), keys).json()["id"]

    for response in (server_api.get(f"{URL}/{subscription_id}"), server_api.get(URL)):
        assert response.status_code == 200
        text = response.content.decode()
        assert keys["p256dh"] not in text and keys["auth"] not in text and '"keys"' not in text


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("https://push.example.com/send/abc", "push.example.com is not a push service host"),
        ("https://fcm.googleapis.com.evil.example/send/abc", "is not a push service host"),
        ("http://fcm.googleapis.com/fcm/send/abc", "must be an https:// URL"),
        ("https://8.8.8.8/push/abc", "names an IP address (8.8.8.8)"),
        ("https://10.0.0.1/push/abc", "private, loopback or reserved address"),
        ("https://[::1]/push/abc", "private, loopback or reserved address"),
        ("https://2130706433/push/abc", "IP address in another notation"),
        ("https://user:pw@fcm.googleapis.com/fcm/send/abc", "user name or password"),
        ("ftp://fcm.googleapis.com/x", "must be an https:// URL"),
        ("fcm.googleapis.com/fcm/send/abc", "must be an https:// URL"),
    ],
)
def test_an_endpoint_off_the_allowed_push_hosts_is_refused_naming_token(client_api, token, problem):
    details = assert_error(
        register(client_api, token, {"p256dh": P256DH, "auth": AUTH}), 400, "validation_error"
    )

    assert list(details) == ["token"]
    assert any(problem in message for message in details["token"]), details
    assert not Subscription.objects.exists()


def test_a_suffix_entry_allows_its_subdomains(client_api):
    response = register(
        client_api,
        "https://updates.push.services.mozilla.com/wpush/v2/abc",
        {"p256dh": P256DH, "auth": AUTH},
    )

    assert response.status_code == 201, response.json()


def test_the_loopback_address_is_allowed_only_when_listed(client_api, settings):
    keys = {"p256dh": P256DH, "auth": AUTH}
    assert "127.0.0.1" in settings.WEB_PUSH_ALLOWED_HOSTS
    assert register(client_api, "http://127.0.0.1:8090/push/a", keys).status_code == 201

    settings.WEB_PUSH_ALLOWED_HOSTS = ["fcm.googleapis.com"]

    details = assert_error(
        register(client_api, "http://127.0.0.1:8090/push/b", keys), 400, "validation_error"
    )
    assert list(details) == ["token"]


def test_a_web_push_subscription_without_keys_is_refused(client_api):
    details = assert_error(register(client_api, endpoint()), 400, "validation_error")

    assert list(details) == ["keys"]
    assert not Subscription.objects.exists()


def test_keys_on_a_subscription_of_another_type_are_refused(client_api):
    response = client_api.post(
        URL,
        {"type": "Email", "token": "ann@example.com", "keys": {"p256dh": P256DH, "auth": AUTH}},
        format="json",
    )

    details = assert_error(response, 400, "validation_error")
    assert list(details) == ["keys"]
    assert not Subscription.objects.exists()


OFF_CURVE = b64url(b"\x04" + b"\x01" * 64)
COMPRESSED = b64url(b"\x02" + base64.urlsafe_b64decode(P256DH + "=")[1:33])


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"p256dh": OFF_CURVE, "auth": AUTH}, "keys.p256dh is not a point on the P-256 curve"),
        ({"p256dh": COMPRESSED, "auth": AUTH}, "65-octet uncompressed P-256 public key"),
        ({"p256dh": P256DH[:-4], "auth": AUTH}, "65-octet uncompressed P-256 public key"),
        ({"p256dh": "not*base64", "auth": AUTH}, "keys.p256dh is missing or not base64url"),
        ({"p256dh": P256DH, "auth": b64url(os.urandom(12))}, "keys.auth must be 16 octets"),
        ({"p256dh": P256DH, "auth": "!!"}, "keys.auth is missing or not base64url"),
        ({"p256dh": P256DH}, "auth"),
        ({"auth": AUTH}, "p256dh"),
        ({"p256dh": P256DH, "auth": AUTH, "extra": "x"}, "extra"),
    ],
    ids=["off the curve", "compressed", "short", "not base64url", "auth of 12 octets",
         "auth not base64url", "no auth", "no p256dh", "an unknown field"],
)  # fmt: skip
def test_unusable_keys_are_refused_naming_keys(client_api, keys, problem):
    details = assert_error(register(client_api, endpoint(), keys), 400, "validation_error")

    assert list(details) == ["keys"]
    assert problem in json.dumps(details), details
    assert not Subscription.objects.exists()


def test_registering_the_endpoint_again_with_new_keys_replaces_them(client_api):
    token, first, second = endpoint(), browser_keys(), browser_keys()
    created = register(client_api, token, first)

    again = register(client_api, token, second)

    assert again.status_code == 200, again.json()
    assert again.json()["id"] == created.json()["id"]
    subscription = Subscription.objects.get()
    assert subscription.keys == second
    changes = SubscriptionEvent.objects.filter(
        subscription=subscription, kind=SubscriptionEvent.Kind.REREGISTERED
    ).values_list("changes", flat=True)
    assert list(changes) == [{"keys": "replaced"}]


def test_registering_the_endpoint_again_with_the_same_keys_changes_nothing(client_api):
    token, keys = endpoint(), browser_keys()
    register(client_api, token, keys)

    again = register(client_api, token, keys)

    assert again.status_code == 200
    assert Subscription.objects.get().keys == keys
    changes = SubscriptionEvent.objects.filter(kind=SubscriptionEvent.Kind.REREGISTERED)
    assert list(changes.values_list("changes", flat=True)) == [{}]


def test_a_new_endpoint_by_put_needs_new_keys(client_api):
    first = browser_keys()
    subscription_id = register(client_api, endpoint(), first).json()["id"]
    new_token = endpoint()

    details = assert_error(
        client_api.put(f"{URL}/{subscription_id}", {"token": new_token}, format="json"),
        400,
        "validation_error",
    )
    assert list(details) == ["keys"]
    subscription = Subscription.objects.get()
    assert subscription.token != new_token and subscription.keys == first

    second = browser_keys()
    response = client_api.put(
        f"{URL}/{subscription_id}", {"token": new_token, "keys": second}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["token"] == new_token and "keys" not in response.json()
    subscription = Subscription.objects.get()
    assert (subscription.token, subscription.keys) == (new_token, second)


def test_put_checks_the_new_endpoint_and_the_new_keys(client_api):
    subscription_id = register(client_api, endpoint(), browser_keys()).json()["id"]
    detail = f"{URL}/{subscription_id}"

    bad_host = client_api.put(
        detail, {"token": "https://evil.example/x", "keys": browser_keys()}, format="json"
    )
    bad_keys = client_api.put(
        detail, {"token": endpoint(), "keys": {"p256dh": OFF_CURVE, "auth": AUTH}}, format="json"
    )

    assert list(assert_error(bad_host, 400, "validation_error")) == ["token"]
    assert list(assert_error(bad_keys, 400, "validation_error")) == ["keys"]


def test_put_keys_on_another_type_is_refused(app, server_api):
    subscription = subscription_create(app.application, type="Email", token="ann@example.com")

    response = server_api.put(
        f"{URL}/{subscription.pk}", {"keys": {"p256dh": P256DH, "auth": AUTH}}, format="json"
    )

    assert list(assert_error(response, 400, "validation_error")) == ["keys"]
