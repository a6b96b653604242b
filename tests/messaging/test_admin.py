"""The operators' console: pages load, search and filters work, key actions are safe."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from messaging import services
from messaging.models import ApiKey, Subscription, SubscriptionEvent
from tests.assertions import assert_error
from tests.conftest import api_client, apns_token, fcm_token, subscription_create

pytestmark = pytest.mark.django_db

APNS_CREDENTIALS = {
    "auth": "token",
    "team_id": "TEAM123456",
    "key_id": "KEY1234567",
    "private_key": "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
    "topic": "com.example.app",
    "sandbox": False,
}


@pytest.fixture
def admin_client(db) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", None)
    client = Client()
    client.force_login(user)
    return client


def shown(response) -> list:
    """The objects on a changelist page."""
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


# --- Applications ------------------------------------------------------------------------------


def test_the_application_changelist_loads(admin_client, app, other_app):
    response = admin_client.get("/admin/messaging/application/")

    assert set(shown(response)) == {app.application, other_app.application}
    assert b"first" in response.content and b"second" in response.content


def test_the_application_change_page_loads_with_keys_and_quota(admin_client, app):
    response = admin_client.get(f"/admin/messaging/application/{app.application.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert app.server.api_key.prefix in html
    assert app.client.api_key.prefix in html
    assert "daily_limit" in html
    # Only the prefix of a key is ever shown, never the key or its digest.
    assert app.server.raw not in html
    assert app.server.api_key.digest not in html


def test_saving_the_application_page_keeps_the_credentials(admin_client, db):
    application = services.application_create(name="ios", apns_credentials=APNS_CREDENTIALS)
    url = f"/admin/messaging/application/{application.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in ("name", "apns_credentials", "fcm_credentials")}
    data.update(
        {
            "name": "ios renamed",
            "settings": "{}",
            "quota-TOTAL_FORMS": "1",
            "quota-INITIAL_FORMS": "1",
            "quota-MIN_NUM_FORMS": "0",
            "quota-MAX_NUM_FORMS": "1",
            "quota-0-application": str(application.pk),
            "quota-0-daily_limit": "1000",
            "quota-0-monthly_limit": "",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "0",
        }
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    application.refresh_from_db()
    assert application.name == "ios renamed"
    assert application.apns_credentials == APNS_CREDENTIALS
    assert application.fcm_credentials == {}
    assert application.quota.daily_limit == 1000


def test_new_credentials_can_be_entered_as_json(admin_client, db):
    application = services.application_create(name="android")
    url = f"/admin/messaging/application/{application.pk}/change/"
    data = {
        "name": "android",
        "apns_credentials": "",
        "fcm_credentials": '{"service_account": {"project_id": "p"}}',
        "settings": "{}",
        "quota-TOTAL_FORMS": "1",
        "quota-INITIAL_FORMS": "1",
        "quota-MIN_NUM_FORMS": "0",
        "quota-MAX_NUM_FORMS": "1",
        "quota-0-application": str(application.pk),
        "quota-0-daily_limit": "",
        "quota-0-monthly_limit": "",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "api_keys-MIN_NUM_FORMS": "0",
        "api_keys-MAX_NUM_FORMS": "0",
    }

    assert admin_client.post(url, data).status_code == 302
    application.refresh_from_db()
    assert application.fcm_credentials == {"service_account": {"project_id": "p"}}
    assert application.apns_credentials == {}

    for invalid in ("{not json", "[1]"):
        data["fcm_credentials"] = invalid
        response = admin_client.post(url, data)
        assert response.status_code == 200
        assert "fcm_credentials" in response.context["adminform"].form.errors
    application.refresh_from_db()
    assert application.fcm_credentials == {"service_account": {"project_id": "p"}}


@pytest.mark.parametrize("scope", ["server", "client"])
def test_the_create_key_action_shows_the_new_key_once_and_it_works(admin_client, app, scope):
    changelist = "/admin/messaging/application/"

    response = admin_client.post(
        changelist,
        {"action": f"create_{scope}_key", "_selected_action": [str(app.application.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    [message] = [m.message for m in response.context["messages"]]
    prefix = "sk_" if scope == "server" else "ck_"
    [raw] = re.findall(rf"<code>({prefix}[A-Za-z0-9_\-]+)</code>", message)
    new_key = ApiKey.objects.get(application=app.application, scope=scope, name="admin")
    assert raw.startswith(new_key.prefix)
    assert raw.encode() in response.content
    # Shown once: the next page does not carry it.
    assert raw.encode() not in admin_client.get(changelist).content
    assert raw.encode() not in admin_client.get(f"{changelist}{app.application.pk}/change/").content

    api = api_client(raw)
    if scope == "server":
        assert api.get("/api/v1/subscriptions").status_code == 200
    else:
        created = api.post(
            "/api/v1/subscriptions", {"type": "iOSPush", "token": apns_token(1)}, format="json"
        )
        assert created.status_code == 201
        assert_error(api.get("/api/v1/subscriptions"), 403, "permission_denied")


# --- API keys ----------------------------------------------------------------------------------


def test_the_api_key_changelist_loads(admin_client, app):
    response = admin_client.get("/admin/messaging/apikey/")

    assert {k.pk for k in shown(response)} == {app.server.api_key.pk, app.client.api_key.pk}
    assert app.server.api_key.digest.encode() not in response.content


def test_the_revoke_action_makes_the_key_get_401(admin_client, app):
    api = api_client(app.server.raw)
    assert api.get("/api/v1/subscriptions").status_code == 200

    response = admin_client.post(
        "/admin/messaging/apikey/",
        {"action": "revoke", "_selected_action": [str(app.server.api_key.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Revoked 1 key(s)." in [m.message for m in response.context["messages"]]
    app.server.api_key.refresh_from_db()
    assert app.server.api_key.revoked_at is not None
    assert_error(api.get("/api/v1/subscriptions"), 401, "authentication_failed")
    # The other key of the application is untouched.
    created = api_client(app.client.raw).post(
        "/api/v1/subscriptions", {"type": "iOSPush", "token": apns_token(1)}, format="json"
    )
    assert created.status_code == 201


# --- Subscriptions -----------------------------------------------------------------------------


@pytest.fixture
def subscriptions(app, other_app) -> dict[str, Subscription]:
    made = {
        "alice_ios": subscription_create(app.application, external_user_id="alice", country="KR"),
        "alice_android": subscription_create(
            app.application, type="AndroidPush", token=fcm_token(1), external_user_id="alice"
        ),
        "bob_email": subscription_create(
            app.application,
            type="Email",
            token="bob@example.com",
            external_user_id="bob",
            country="JP",
        ),
        "theirs": subscription_create(other_app.application, external_user_id="alice-2"),
    }
    services.subscription_disable(subscription_id=made["bob_email"].pk, reason="bounced")
    return made


def test_the_subscription_changelist_loads(admin_client, subscriptions):
    response = admin_client.get("/admin/messaging/subscription/")

    assert {s.pk for s in shown(response)} == {s.pk for s in subscriptions.values()}
    assert b"alice" in response.content
    for subscription in subscriptions.values():
        assert subscription.token.encode() not in response.content


def test_the_subscription_changelist_searches_by_external_user_id(admin_client, subscriptions):
    found = shown(admin_client.get("/admin/messaging/subscription/", {"q": "bob"}))

    assert [s.pk for s in found] == [subscriptions["bob_email"].pk]


def test_the_subscription_changelist_searches_by_id(admin_client, subscriptions):
    target = subscriptions["alice_android"]

    found = shown(admin_client.get("/admin/messaging/subscription/", {"q": str(target.pk)}))

    assert [s.pk for s in found] == [target.pk]


def test_a_search_term_that_is_no_uuid_does_not_break_the_id_search(admin_client, subscriptions):
    found = shown(admin_client.get("/admin/messaging/subscription/", {"q": "alice"}))

    assert {s.pk for s in found} == {
        subscriptions["alice_ios"].pk,
        subscriptions["alice_android"].pk,
        subscriptions["theirs"].pk,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type__exact": "AndroidPush"}, {"alice_android"}),
        ({"type__exact": "Email"}, {"bob_email"}),
        ({"enabled__exact": "0"}, {"bob_email"}),
        ({"enabled__exact": "1"}, {"alice_ios", "alice_android", "theirs"}),
        ({"country__exact": "KR"}, {"alice_ios"}),
        ({"country__exact": "JP", "enabled__exact": "0"}, {"bob_email"}),
    ],
)
def test_the_subscription_changelist_filters(admin_client, subscriptions, params, expected):
    found = shown(admin_client.get("/admin/messaging/subscription/", params))

    assert {s.pk for s in found} == {subscriptions[name].pk for name in expected}


def test_the_subscription_change_page_shows_its_events(admin_client, app, subscriptions):
    subscription = subscriptions["alice_ios"]
    api_client(app.server.raw).put(
        f"/api/v1/subscriptions/{subscription.pk}", {"tags": {"plan": "gold"}}, format="json"
    )

    response = admin_client.get(f"/admin/messaging/subscription/{subscription.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "created" in html and "updated" in html
    assert f"api_key:{app.server.api_key.prefix}" in html
    assert subscription.token not in html  # the token is never shown in the console
    [formset] = [f for f in response.context["inline_admin_formsets"]]
    assert formset.formset.queryset.count() == 2


def test_the_disable_action_disables_with_the_operator_as_actor(admin_client, subscriptions):
    target = subscriptions["alice_ios"]

    response = admin_client.post(
        "/admin/messaging/subscription/",
        {"action": "disable", "_selected_action": [str(target.pk)]},
        follow=True,
    )

    assert "Disabled 1 subscription(s)." in [m.message for m in response.context["messages"]]
    target.refresh_from_db()
    assert (target.enabled, target.disabled_reason) == (False, "disabled_by_operator")
    event = SubscriptionEvent.objects.filter(subscription=target).last()
    assert (event.kind, event.actor) == ("disabled", "admin:root")


def test_the_user_changelist_loads(admin_client, subscriptions):
    response = admin_client.get("/admin/messaging/user/", {"q": "alice"})

    assert {u.external_user_id for u in shown(response)} == {"alice", "alice-2"}


def test_an_anonymous_visitor_is_sent_to_the_login_page(db):
    response = Client().get("/admin/messaging/application/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
