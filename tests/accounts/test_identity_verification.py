"""Identity verification: off by default; turned on by `PUT /applications/current` or the
admin (the secret shown once, rotated with a grace period); when on, client-key calls acting
for a user carry X-User-Hash = hex(HMAC-SHA256(secret, external_user_id)), else 401."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Application
from accounts.services import identity_secret_rotate, identity_verification_set
from tests.admin_pages import page_data
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

APP_URL = "/api/v1/applications/current"


def user_hash(secret: str, external_user_id: str) -> str:
    # What docs/channels.md tells backends to compute.
    return hmac.new(secret.encode(), external_user_id.encode(), hashlib.sha256).hexdigest()


def turned_on(app) -> str:
    return identity_verification_set(application=app.application, enabled=True)


def inbox(app, user=None, device="device-1"):
    return subscription_create(
        app.application, type="InAppMessage", token=device, external_user_id=user
    )


# --- The setting ------------------------------------------------------------------------------


def test_off_by_default_and_shown_to_both_keys(app, server_api, client_api):
    assert server_api.get(APP_URL).json()["identity_verification"] is False
    assert client_api.get(APP_URL).json()["identity_verification"] is False


def test_put_turns_it_on_with_a_secret_shown_once_and_off(app, server_api):
    on = server_api.put(APP_URL, {"identity_verification": True}, format="json")
    assert on.status_code == 200, on.content
    secret = on.json()["identity_secret"]
    assert len(secret) == 64 and on.json()["identity_verification"] is True
    application = Application.objects.get(pk=app.application.pk)
    assert application.identity_verification and application.identity_secret == secret

    again = server_api.put(APP_URL, {"identity_verification": True}, format="json")
    assert "identity_secret" not in again.json()
    off = server_api.put(APP_URL, {"identity_verification": False}, format="json")
    assert off.status_code == 200 and off.json()["identity_verification"] is False
    assert server_api.get(APP_URL).json()["identity_verification"] is False
    # Turned on again: the same secret, not shown again.
    back = server_api.put(APP_URL, {"identity_verification": True}, format="json")
    assert "identity_secret" not in back.json()
    assert Application.objects.get(pk=app.application.pk).identity_secret == secret


@pytest.mark.parametrize(
    "body",
    [{}, {"identity_verification": "true"}, {"identity_verification": 1},
     {"identity_verification": None}, {"identity_verification": True, "name": "x"}, []],
)  # fmt: skip
def test_put_refuses_anything_else(app, server_api, body):
    response = server_api.put(APP_URL, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert Application.objects.get(pk=app.application.pk).identity_verification is False


def test_put_needs_a_server_key(app, client_api):
    response = client_api.put(APP_URL, {"identity_verification": True}, format="json")
    assert response.status_code == 403
    assert Application.objects.get(pk=app.application.pk).identity_verification is False


# --- What it guards -----------------------------------------------------------------------------


def test_the_inbox_needs_the_users_hash_from_a_client_key(app, client_api, server_api):
    secret = turned_on(app)
    subscription = inbox(app, user="user-1")
    anonymous = inbox(app, device="device-2")
    url = f"/api/v1/inbox/count?subscription_id={subscription.pk}"

    missing = client_api.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "authentication_failed"
    assert client_api.get(url, HTTP_X_USER_HASH="0" * 64).status_code == 401
    assert client_api.get(url, HTTP_X_USER_HASH=user_hash(secret, "user-2")).status_code == 401
    assert client_api.get(url, HTTP_X_USER_HASH="ü" * 64).status_code == 401
    good = user_hash(secret, "user-1")
    assert client_api.get(url, HTTP_X_USER_HASH=good).status_code == 200
    assert client_api.get(url, HTTP_X_USER_HASH=good.upper()).status_code == 200
    assert server_api.get(url).status_code == 200  # server keys are trusted
    for path in ("/api/v1/inbox", "/api/v1/inbox/read-all"):
        call = client_api.post if path.endswith("read-all") else client_api.get
        assert call(f"{path}?subscription_id={subscription.pk}").status_code == 401
    # A subscription without a user cannot be proven.
    no_user = f"/api/v1/inbox/count?subscription_id={anonymous.pk}"
    assert client_api.get(no_user, HTTP_X_USER_HASH=good).status_code == 401


def test_with_it_off_no_hash_is_needed(app, client_api):
    subscription = inbox(app, user="user-1")
    response = client_api.get(f"/api/v1/inbox/count?subscription_id={subscription.pk}")
    assert response.status_code == 200


def test_identify_logout_and_reads_need_the_hash(app, client_api):
    secret = turned_on(app)
    subscription = inbox(app)
    identify = {"external_user_id": "user-7", "subscription_id": str(subscription.pk)}

    refused = client_api.post("/api/v1/users/identify", identify, format="json")
    assert refused.status_code == 401
    wrong = client_api.post(
        "/api/v1/users/identify", identify, format="json",
        HTTP_X_USER_HASH=user_hash(secret, "user-8"),
    )  # fmt: skip
    assert wrong.status_code == 401
    good = user_hash(secret, "user-7")
    done = client_api.post("/api/v1/users/identify", identify, format="json", HTTP_X_USER_HASH=good)
    assert done.status_code == 200, done.content

    read_url = f"/api/v1/subscriptions/{subscription.pk}"
    assert client_api.get(read_url).status_code == 401
    assert client_api.get(read_url, HTTP_X_USER_HASH=good).status_code == 200
    anonymous = inbox(app, device="device-3")
    assert client_api.get(f"/api/v1/subscriptions/{anonymous.pk}").status_code == 200

    logout = {"subscription_id": str(subscription.pk)}
    assert client_api.post("/api/v1/users/logout", logout, format="json").status_code == 401
    out = client_api.post("/api/v1/users/logout", logout, format="json", HTTP_X_USER_HASH=good)
    assert out.status_code == 200 and out.json()["external_user_id"] is None


def test_the_previous_secret_is_honoured_for_the_grace_period(app, client_api, settings):
    settings.IDENTITY_SECRET_GRACE_SECONDS = 60
    old = turned_on(app)
    new = identity_secret_rotate(application=app.application, actor="test")
    assert new != old
    subscription = inbox(app, user="user-1")
    url = f"/api/v1/inbox/count?subscription_id={subscription.pk}"

    assert client_api.get(url, HTTP_X_USER_HASH=user_hash(new, "user-1")).status_code == 200
    assert client_api.get(url, HTTP_X_USER_HASH=user_hash(old, "user-1")).status_code == 200

    Application.objects.filter(pk=app.application.pk).update(
        identity_secret_rotated_at=timezone.now() - timedelta(seconds=61)
    )
    assert client_api.get(url, HTTP_X_USER_HASH=user_hash(old, "user-1")).status_code == 401
    assert client_api.get(url, HTTP_X_USER_HASH=user_hash(new, "user-1")).status_code == 200


# --- The admin ------------------------------------------------------------------------------


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_admin_turns_it_on_and_shows_the_secret_once(admin_client, app):
    url = f"/admin/accounts/application/{app.application.pk}/change/"
    data = page_data(admin_client.get(url))
    data["identity_verification"] = "on"

    response = admin_client.post(url, data, follow=True)

    application = Application.objects.get(pk=app.application.pk)
    assert application.identity_verification is True
    shown = [m for m in _messages(response) if "Identity secret" in m]
    assert len(shown) == 1 and application.identity_secret in shown[0]
    page = admin_client.get(url).content.decode()
    assert application.identity_secret not in page

    data = page_data(admin_client.get(url))
    data.pop("identity_verification", None)
    response = admin_client.post(url, data, follow=True)
    assert Application.objects.get(pk=app.application.pk).identity_verification is False
    assert not [m for m in _messages(response) if "Identity secret" in m]


def test_the_admin_rotates_the_secret_after_confirming(admin_client, app):
    old = turned_on(app)
    changelist = "/admin/accounts/application/"
    selected = {"action": "rotate_identity_secret", "_selected_action": [str(app.application.pk)]}

    page = admin_client.post(changelist, selected)
    assert page.status_code == 200 and b"Rotate identity secrets" in page.content
    assert Application.objects.get(pk=app.application.pk).identity_secret == old

    done = admin_client.post(changelist, selected | {"confirm": "yes"}, follow=True)

    application = Application.objects.get(pk=app.application.pk)
    assert application.identity_secret != old and application.identity_secret_previous == old
    assert application.identity_secret_rotated_at is not None
    assert any(application.identity_secret in m for m in _messages(done))
