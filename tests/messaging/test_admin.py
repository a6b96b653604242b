"""The operators' console: pages load, search and filters work, key actions are safe."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from accounts import credentials
from accounts.models import ApiKey, Application, ChannelCredential, MessageQuota
from accounts.services import application_create
from messaging.models import Subscription, SubscriptionEvent
from messaging.services.subscriptions import subscription_disable
from tests.admin_pages import p8_key, page_data, pem_body_lines, rsa_key, service_account
from tests.assertions import assert_error
from tests.conftest import api_client, apns_token, fcm_token, subscription_create

pytestmark = pytest.mark.django_db


def credentials_of(application, channel: str) -> tuple[dict, object]:
    """An application's stored credentials for a channel and when they were set."""
    row = ChannelCredential.objects.filter(application=application, channel=channel).first()
    return (row.values, row.set_at) if row else ({}, None)


def apns_of(application) -> dict:
    return credentials_of(application, "iOSPush")[0]


def fcm_of(application) -> dict:
    return credentials_of(application, "AndroidPush")[0]


APNS_CREDENTIALS = {
    "auth": "token",
    "team_id": "TEAM123456",
    "key_id": "KEY1234567",
    "private_key": "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
    "topic": "com.example.app",
    "sandbox": False,
}


def shown(response) -> list:
    """The objects on a changelist page."""
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


# --- Applications ------------------------------------------------------------------------------


def test_the_application_changelist_loads(admin_client, app, other_app):
    response = admin_client.get("/admin/accounts/application/")

    assert set(shown(response)) == {app.application, other_app.application}
    assert b"first" in response.content and b"second" in response.content


def test_the_application_change_page_loads_with_keys_and_quota(admin_client, app):
    response = admin_client.get(f"/admin/accounts/application/{app.application.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert app.server.api_key.prefix in html
    assert app.client.api_key.prefix in html
    assert "daily_limit" in html
    # Only the prefix of a key is ever shown, never the key or its digest.
    assert app.server.raw not in html
    assert app.server.api_key.digest not in html


def change_url(application) -> str:
    return f"/admin/accounts/application/{application.pk}/change/"


def upload(name: str, content: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode())


@pytest.fixture
def p8() -> str:
    return p8_key()


@pytest.fixture
def account() -> dict:
    return service_account()


def test_saving_the_application_page_keeps_the_credentials(admin_client, db):
    application = application_create(name="ios", credentials={"iOSPush": APNS_CREDENTIALS})
    set_at = credentials_of(application, "iOSPush")[1]
    url = change_url(application)
    data = page_data(admin_client.get(url))
    data.update({"name": "ios renamed", "quota-0-daily_limit": "1000"})

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    application.refresh_from_db()
    assert application.name == "ios renamed"
    assert credentials_of(application, "iOSPush") == (APNS_CREDENTIALS, set_at)
    assert fcm_of(application) == {}
    assert application.quota.daily_limit == 1000


def test_credentials_are_uploaded_as_files_and_shown_only_by_fingerprint(
    admin_client, db, p8, account
):
    application = application_create(name="both")
    url = change_url(application)
    data = page_data(admin_client.get(url))
    data.update(
        {
            "apns_key_file": upload("AuthKey_KEY1234567.p8", p8),
            "apns_key_id": "KEY1234567",
            "apns_team_id": "TEAM123456",
            "apns_topic": "com.example.app",
            "apns_sandbox": "on",
            "fcm_service_account_file": upload("service-account.json", json.dumps(account)),
        }
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert apns_of(application) == {
        "auth": "token",
        "key_id": "KEY1234567",
        "team_id": "TEAM123456",
        "topic": "com.example.app",
        "private_key": p8,
        "sandbox": True,
    }
    assert fcm_of(application) == {"service_account": account}
    apns_set_at = credentials_of(application, "iOSPush")[1]
    assert apns_set_at is not None
    assert credentials_of(application, "AndroidPush")[1] is not None

    html = admin_client.get(url).content.decode()
    for shown in (
        "KEY1234567",
        "TEAM123456",
        "com.example.app",
        credentials.fingerprint(p8),
        "signal-admin",
        account["client_email"],
        account["private_key_id"],
        credentials.fingerprint(account["private_key"]),
        f"{timezone.localtime(apns_set_at):%Y-%m-%d %H:%M}",
    ):
        assert shown in html, shown
    for secret in [*pem_body_lines(p8), *pem_body_lines(account["private_key"])]:
        assert secret not in html
    assert "PRIVATE KEY" not in html


def test_the_fingerprint_is_that_of_the_public_key(p8):
    from cryptography.hazmat.primitives import serialization

    public = (
        serialization.load_pem_private_key(p8.encode(), None)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    assert credentials.fingerprint(p8) == "sha256:" + hashlib.sha256(public).hexdigest()[:16]


def test_new_ids_for_the_stored_key_keep_the_key(admin_client, db, p8):
    application = application_create(
        name="ios",
        credentials={
            "iOSPush": credentials.apns_credentials_clean(
                private_key=p8, key_id="KEY1", team_id="TEAM1", topic="com.example.old"
            )
        },
    )
    url = change_url(application)
    data = page_data(admin_client.get(url))
    assert data["apns_topic"] == "com.example.old"  # the ids are shown; the key is not
    data["apns_topic"] = "com.example.new"

    assert admin_client.post(url, data).status_code == 302
    assert apns_of(application)["topic"] == "com.example.new"
    assert apns_of(application)["private_key"] == p8


def test_the_clear_boxes_remove_the_credentials(admin_client, db, p8, account):
    application = application_create(
        name="both",
        credentials={
            "iOSPush": credentials.apns_credentials_clean(
                private_key=p8, key_id="K", team_id="T", topic="com.example.app"
            ),
            "AndroidPush": {"service_account": account},
        },
    )
    url = change_url(application)
    data = page_data(admin_client.get(url))
    data.update({"apns_clear": "on", "fcm_clear": "on"})

    assert admin_client.post(url, data).status_code == 302
    assert not ChannelCredential.objects.filter(application=application).exists()
    assert "None stored." in admin_client.get(url).content.decode()


def _bad_uploads():
    account = service_account()
    no_key = {k: v for k, v in account.items() if k != "private_key"}
    return [
        ({"apns_key_file": "hello"}, "apns_key_file", "not a PEM"),
        ({"apns_key_file": rsa_key()}, "apns_key_file", "not an EC private key"),
        ({"apns_key_file": p8_key(), "apns_team_id": ""}, "apns_key_file", "team id"),
        ({"apns_key_id": "KEY9"}, "apns_key_file", "Upload the .p8 key file"),
        ({"fcm_service_account_file": "{not json"}, "fcm_service_account_file", "not JSON"),
        ({"fcm_service_account_file": "[1]"}, "fcm_service_account_file", "not a JSON object"),
        (
            {"fcm_service_account_file": json.dumps(no_key)},
            "fcm_service_account_file",
            "lacks private_key",
        ),
        (
            {"fcm_service_account_file": json.dumps({**account, "type": "authorized_user"})},
            "fcm_service_account_file",
            "not a service account",
        ),
        ({"apns_key_file": "\udcff"}, "apns_key_file", "not UTF-8"),
    ]


@pytest.mark.parametrize(("fields", "field", "fragment"), _bad_uploads())
def test_bad_credential_uploads_are_form_errors_and_store_nothing(
    admin_client, db, fields, field, fragment
):
    application = application_create(name="empty")
    url = change_url(application)
    data = page_data(admin_client.get(url))
    data.update(
        {"apns_key_id": "KEY1234567", "apns_team_id": "TEAM123456", "apns_topic": "com.x"}
        if "apns_key_file" in fields
        else {}
    )
    for name, value in fields.items():
        if name.endswith("_file"):
            raw = value.encode("utf-8", "surrogateescape")
            data[name] = SimpleUploadedFile(f"{name}.upload", raw)
        else:
            data[name] = value

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert fragment in " ".join(errors.get(field, [])), errors
    assert not ChannelCredential.objects.filter(application=application).exists()


def test_an_application_is_added_with_uploaded_credentials_and_a_quota(admin_client, db, p8):
    response = admin_client.get("/admin/accounts/application/add/")
    data = page_data(response)
    data.update(
        {
            "name": "new ios app",
            "settings": "{}",
            "apns_key_file": upload("AuthKey.p8", p8),
            "apns_key_id": "KEY1234567",
            "apns_team_id": "TEAM123456",
            "apns_topic": "com.example.new",
        }
    )

    response = admin_client.post("/admin/accounts/application/add/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    application = Application.objects.get(name="new ios app")
    assert apns_of(application)["private_key"] == p8
    assert credentials_of(application, "iOSPush")[1] is not None
    assert MessageQuota.objects.filter(application=application).exists()


def test_text_the_database_cannot_store_is_a_form_error_on_the_application_page(admin_client, app):
    url = change_url(app.application)
    data = page_data(admin_client.get(url))
    data["settings"] = '{"note": "a\\u0000b"}'

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["settings"] == [
        "Null characters are not allowed."
    ]


@pytest.mark.parametrize("scope", ["server", "client"])
def test_the_create_key_action_shows_the_new_key_once_and_it_works(admin_client, app, scope):
    changelist = "/admin/accounts/application/"

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
    response = admin_client.get("/admin/accounts/apikey/")

    assert {k.pk for k in shown(response)} == {app.server.api_key.pk, app.client.api_key.pk}
    assert app.server.api_key.digest.encode() not in response.content


def test_the_revoke_action_makes_the_key_get_401(admin_client, app):
    api = api_client(app.server.raw)
    assert api.get("/api/v1/subscriptions").status_code == 200

    selected = {"action": "revoke", "_selected_action": [str(app.server.api_key.pk)]}
    page = admin_client.post("/admin/accounts/apikey/", selected)
    assert page.status_code == 200
    assert "every request made with them gets 401" in page.content.decode()
    assert api.get("/api/v1/subscriptions").status_code == 200  # not yet

    response = admin_client.post(
        "/admin/accounts/apikey/", {**selected, "confirm": "yes"}, follow=True
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
    subscription_disable(subscription_id=made["bob_email"].pk, reason="bounced")
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

    selected = {"action": "disable", "_selected_action": [str(target.pk)]}
    page = admin_client.post("/admin/messaging/subscription/", selected)
    assert page.status_code == 200 and "Disable these subscriptions" in page.content.decode()
    target.refresh_from_db()
    assert target.enabled

    response = admin_client.post(
        "/admin/messaging/subscription/", {**selected, "confirm": "yes"}, follow=True
    )

    assert "Disabled 1 subscription(s)." in [m.message for m in response.context["messages"]]
    target.refresh_from_db()
    assert (target.enabled, target.disabled_reason) == (False, "disabled_by_operator")
    event = SubscriptionEvent.objects.filter(subscription=target).last()
    assert (event.kind, event.actor) == ("disabled", "admin:root")


def subscription_url(subscription) -> str:
    return f"/admin/messaging/subscription/{subscription.pk}/change/"


def stored(subscription) -> tuple:
    subscription.refresh_from_db()
    return (
        subscription.tags,
        subscription.language,
        subscription.country,
        subscription.timezone,
        subscription.device,
        subscription.enabled,
        subscription.last_active_at,
        subscription.events.count(),
    )


def strings(value):
    """Every string in a nested error detail."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    else:
        for item in value:
            yield from strings(item)


# Each value the API refuses on PUT /subscriptions/{id}, as typed into the admin form.
REFUSED = [
    ("tags", '{"plan": 5}', {"tags": {"plan": 5}}),
    ("tags", '{"nested": {"a": "b"}}', {"tags": {"nested": {"a": "b"}}}),
    ("tags", '{"": "x"}', {"tags": {"": "x"}}),
    ("tags", '["gold"]', {"tags": ["gold"]}),
    ("tags", '{"plan": "a\\u0000b"}', {"tags": {"plan": "a\x00b"}}),
    ("language", "not a language!!", {"language": "not a language!!"}),
    ("country", "zz", {"country": "zz"}),
    ("timezone", "Mars/Olympus", {"timezone": "Mars/Olympus"}),
    ("device", '{"model": 5, "color": "red"}', {"device": {"model": 5, "color": "red"}}),
]


@pytest.mark.parametrize(("field", "typed", "body"), REFUSED)
def test_the_admin_refuses_what_the_api_refuses(admin_client, app, field, typed, body):
    subscription = subscription_create(app.application, tags={"plan": "gold"}, country="KR")
    before = stored(subscription)
    api = api_client(app.server.raw).put(
        f"/api/v1/subscriptions/{subscription.pk}", body, format="json"
    )
    details = assert_error(api, 400, "validation_error")
    data = page_data(admin_client.get(subscription_url(subscription)))
    data[field] = typed

    response = admin_client.post(subscription_url(subscription), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    # In the API's own words.
    api_messages = list(strings(details[field]))
    # (The admin may put the API's field path in front: "tags: ...".)
    assert any(
        message in api_messages or message.split(": ", 1)[-1] in api_messages
        for message in errors[field]
    ), (
        errors[field],
        api_messages,
    )
    assert stored(subscription) == before


@pytest.mark.parametrize(
    ("field", "typed"),
    [
        ("tags", '{"plan": "\\ud800"}'),
        ("tags", '{"\\u0000": "x"}'),
        ("device", '{"model": "\\u0000"}'),
        ("language", "ko\x00"),
        ("timezone", "Asia/Seoul\x00"),
    ],
)
def test_text_the_database_cannot_store_is_a_form_error_not_a_500(admin_client, app, field, typed):
    subscription = subscription_create(app.application)
    before = stored(subscription)
    data = page_data(admin_client.get(subscription_url(subscription)))
    data[field] = typed

    response = admin_client.post(subscription_url(subscription), data)

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert stored(subscription) == before


def test_an_admin_edit_writes_the_event_the_api_writes(admin_client, app):
    by_api = subscription_create(app.application, tags={"plan": "gold", "city": "Seoul"})
    by_admin = subscription_create(app.application, tags={"plan": "gold", "city": "Seoul"})
    active_before = stored(by_admin)[6]
    api_client(app.server.raw).put(
        f"/api/v1/subscriptions/{by_api.pk}",
        {"tags": {"plan": "silver", "city": None}, "country": "jp", "timezone": "Asia/Tokyo"},
        format="json",
    )
    data = page_data(admin_client.get(subscription_url(by_admin)))
    data.update({"tags": '{"plan": "silver"}', "country": "jp", "timezone": "Asia/Tokyo"})

    response = admin_client.post(subscription_url(by_admin), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    api_event = by_api.events.last()
    admin_event = by_admin.events.last()
    assert (admin_event.kind, admin_event.changes) == (api_event.kind, api_event.changes)
    assert admin_event.changes["tags"] == [{"plan": "gold", "city": "Seoul"}, {"plan": "silver"}]
    assert admin_event.actor == "admin:root"
    by_admin.refresh_from_db()
    assert (by_admin.tags, by_admin.country) == ({"plan": "silver"}, "JP")  # as the API stores
    # An operator's edit is not the device's activity.
    assert by_admin.last_active_at == active_before


def test_disabling_in_the_form_records_the_operator(admin_client, app):
    subscription = subscription_create(app.application)
    data = page_data(admin_client.get(subscription_url(subscription)))
    del data["enabled"]

    assert admin_client.post(subscription_url(subscription), data).status_code == 302
    subscription.refresh_from_db()
    assert (subscription.enabled, subscription.disabled_reason) == (False, "disabled_by_operator")
    event = subscription.events.last()
    assert (event.kind, event.actor) == ("disabled", "admin:root")


def test_moving_a_subscription_to_another_user_records_it(admin_client, app, other_app):
    subscription = subscription_create(app.application, external_user_id="alice")
    bob = subscription_create(app.application, external_user_id="bob").user
    stranger = subscription_create(other_app.application, external_user_id="carol").user
    url = subscription_url(subscription)
    data = page_data(admin_client.get(url))

    refused = admin_client.post(url, {**data, "user": str(stranger.pk)})
    moved = admin_client.post(url, {**data, "user": str(bob.pk)})

    assert "user" in refused.context["adminform"].form.errors
    assert moved.status_code == 302
    subscription.refresh_from_db()
    assert subscription.user == bob
    event = subscription.events.last()
    assert (event.kind, event.actor, event.changes) == (
        "identified",
        "admin:root",
        {"external_user_id": ["alice", "bob"]},
    )


def test_users_are_shown_not_edited(admin_client, subscriptions):
    user = subscriptions["alice_ios"].user
    url = f"/admin/messaging/user/{user.pk}/change/"

    admin_client.post(url, {"external_user_id": "mallory", "application": "x"})

    user.refresh_from_db()
    assert user.external_user_id == "alice"
    assert admin_client.get("/admin/messaging/user/add/").status_code == 403


def test_the_user_changelist_loads(admin_client, subscriptions):
    response = admin_client.get("/admin/messaging/user/", {"q": "alice"})

    assert {u.external_user_id for u in shown(response)} == {"alice", "alice-2"}


def test_an_anonymous_visitor_is_sent_to_the_login_page(db):
    response = Client().get("/admin/accounts/application/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
