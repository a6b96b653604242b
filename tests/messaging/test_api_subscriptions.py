"""POST/GET /subscriptions and GET/PUT/DELETE /subscriptions/{id}."""

from __future__ import annotations

import uuid

import pytest

from messaging.models import Subscription, SubscriptionEvent
from messaging.services.subscriptions import subscription_disable
from tests.assertions import assert_error
from tests.conftest import api_client, apns_token, fcm_token, subscription_create

URL = "/api/v1/subscriptions"

pytestmark = pytest.mark.django_db


def detail_url(subscription_id) -> str:
    return f"{URL}/{subscription_id}"


def actor(app_keys, scope: str = "server") -> str:
    return f"api_key:{getattr(app_keys, scope).api_key.prefix}"


def events(subscription_id) -> list[tuple[str, str]]:
    return list(
        SubscriptionEvent.objects.filter(subscription_id=subscription_id).values_list(
            "kind", "actor"
        )
    )


# --- Registration ------------------------------------------------------------------------------


def test_register_returns_201_with_the_single_object_form(server_api, app):
    token = apns_token(1)
    response = server_api.post(
        URL,
        {
            "type": "iOSPush",
            "token": token,
            "external_user_id": "user-123",
            "tags": {"plan": "gold"},
            "language": "ko",
            "country": "kr",
            "timezone": "Asia/Seoul",
            "device": {"model": "iPhone15,2", "os": "iOS 18.1", "app_version": "2.4.0"},
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    subscription = Subscription.objects.get()
    assert body["id"] == str(subscription.pk)
    assert body["type"] == "iOSPush"
    assert body["token"] == token
    assert body["enabled"] is True
    assert body["external_user_id"] == "user-123"
    assert body["tags"] == {"plan": "gold"}
    assert (body["language"], body["country"], body["timezone"]) == ("ko", "KR", "Asia/Seoul")
    assert body["device"] == {"model": "iPhone15,2", "os": "iOS 18.1", "app_version": "2.4.0"}
    assert body["last_active_at"] and body["created_at"].endswith(("Z", "+00:00"))
    assert subscription.application == app.application
    assert subscription.user.external_user_id == "user-123"
    assert events(subscription.pk) == [("created", actor(app))]


def test_subscription_ids_are_time_ordered(server_api):
    """Version 7 ids, in registration order: an audience walked by id reads the table in the
    order it was written."""
    ids = []
    for index in range(5):
        response = server_api.post(
            URL, {"type": "iOSPush", "token": apns_token(index)}, format="json"
        )
        assert response.status_code == 201, response.json()
        ids.append(uuid.UUID(response.json()["id"]))

    assert {i.version for i in ids} == {7}
    assert [i.bytes[:6] for i in ids] == sorted(i.bytes[:6] for i in ids)  # milliseconds


def test_a_client_key_may_register(client_api, app):
    response = client_api.post(URL, {"type": "AndroidPush", "token": fcm_token(1)}, format="json")

    assert response.status_code == 201, response.json()
    assert events(response.json()["id"]) == [("created", actor(app, "client"))]


@pytest.mark.parametrize(
    ("type_", "token", "stored"),
    [
        ("iOSPush", "ab" * 32, "ab" * 32),
        ("iOSPush", "AB" * 32, "ab" * 32),
        ("iOSPush", "<" + "ab" * 16 + " " + "cd" * 16 + ">", "ab" * 16 + "cd" * 16),
        ("AndroidPush", "fcm-token:APA91b" + "x" * 140, "fcm-token:APA91b" + "x" * 140),
        ("Email", "Kim.Minsu@Example.COM", "Kim.Minsu@example.com"),
        ("SMS", "+821012345678", "+821012345678"),
        ("SMS", "+82 10-1234-5678", "+821012345678"),
        ("KakaoTalk", "+821012345678", "+821012345678"),
        ("InAppMessage", "in-app-user-device-7", "in-app-user-device-7"),
    ],
)
def test_valid_token_forms_are_accepted_and_normalized(server_api, type_, token, stored):
    response = server_api.post(URL, {"type": type_, "token": token}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["token"] == stored
    assert Subscription.objects.get().token == stored


@pytest.mark.parametrize(
    ("type_", "token"),
    [
        ("iOSPush", "zz" * 32),  # not hex
        ("iOSPush", "ab" * 16),  # too short
        ("iOSPush", "a" * 65),  # odd number of digits
        ("AndroidPush", "fcm token with spaces in it, which is wrong"),
        ("AndroidPush", "short"),
        ("Email", "not-an-email"),
        ("Email", "kim@"),
        ("SMS", "01012345678"),  # no country code
        ("SMS", "+0101234"),
        ("KakaoTalk", "kakao-user"),
        ("InAppMessage", "x" * 256),
        ("InAppMessage", ""),
    ],
)
def test_malformed_tokens_are_rejected_per_type(server_api, type_, token):
    response = server_api.post(URL, {"type": type_, "token": token}, format="json")

    details = assert_error(response, 400, "validation_error")
    assert list(details) == ["token"]
    assert details["token"] and all(isinstance(m, str) for m in details["token"])
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("country", "KOR"),
        ("country", "K1"),
        ("country", "zz"),  # user-assigned: no country
        ("country", "XX"),
        ("timezone", "Asia/Nowhere"),
        ("timezone", "../etc/passwd"),
        ("language", "ko!"),
        ("language", "x" * 17),
    ],
)
def test_bad_profile_fields_are_rejected(server_api, field, value):
    response = server_api.post(
        URL, {"type": "iOSPush", "token": apns_token(1), field: value}, format="json"
    )

    details = assert_error(response, 400, "validation_error")
    assert list(details) == [field]
    assert not Subscription.objects.exists()


def test_an_unknown_type_is_rejected(server_api):
    response = server_api.post(URL, {"type": "Pigeon", "token": "coo"}, format="json")

    details = assert_error(response, 400, "validation_error")
    assert "type" in details
    assert not Subscription.objects.exists()


def test_type_and_token_are_required(server_api):
    details = assert_error(server_api.post(URL, {}, format="json"), 400, "validation_error")

    assert set(details) == {"type", "token"}


@pytest.mark.parametrize(
    "tags",
    [{"plan": 5}, {"plan": True}, {"nested": {"a": "b"}}, {"": "x"}, {"plan": "x\x00y"}],
)
def test_tags_are_strings_with_names_as_sent(server_api, tags):
    response = server_api.post(
        URL, {"type": "iOSPush", "token": apns_token(1), "tags": tags}, format="json"
    )

    assert "tags" in assert_error(response, 400, "validation_error")
    assert not Subscription.objects.exists()


def test_tags_must_map_strings_to_strings(server_api):
    response = server_api.post(
        URL, {"type": "iOSPush", "token": apns_token(1), "tags": ["gold"]}, format="json"
    )

    assert "tags" in assert_error(response, 400, "validation_error")


# --- Re-registration ---------------------------------------------------------------------------


def test_registering_the_same_token_again_returns_200_and_the_same_subscription(server_api, app):
    token = apns_token(1)
    first = server_api.post(
        URL, {"type": "iOSPush", "token": token, "tags": {"plan": "gold"}}, format="json"
    )
    again = server_api.post(
        URL,
        {"type": "iOSPush", "token": token, "tags": {"level": "3"}, "language": "en"},
        format="json",
    )

    assert first.status_code == 201
    assert again.status_code == 200, again.json()
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["tags"] == {"plan": "gold", "level": "3"}
    assert again.json()["language"] == "en"
    assert Subscription.objects.count() == 1
    assert events(first.json()["id"]) == [
        ("created", actor(app)),
        ("reregistered", actor(app)),
    ]


@pytest.mark.parametrize(
    ("type_", "first", "equivalent"),
    [
        ("iOSPush", "ab" * 32, "AB" * 32),
        ("iOSPush", "ab" * 32, "<" + "AB" * 32 + ">"),
        ("Email", "kim@example.com", "  kim@EXAMPLE.com "),
        ("SMS", "+821012345678", "+82 (10) 1234-5678"),
    ],
)
def test_an_equivalent_token_is_the_same_subscription(server_api, type_, first, equivalent):
    created = server_api.post(URL, {"type": type_, "token": first}, format="json")
    again = server_api.post(URL, {"type": type_, "token": equivalent}, format="json")

    assert created.status_code == 201
    assert again.status_code == 200, again.json()
    assert again.json()["id"] == created.json()["id"]
    assert Subscription.objects.count() == 1


def test_the_same_token_under_another_type_is_another_subscription(server_api):
    first = server_api.post(URL, {"type": "SMS", "token": "+821012345678"}, format="json")
    second = server_api.post(URL, {"type": "KakaoTalk", "token": "+821012345678"}, format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


def test_the_same_token_in_another_application_is_not_shared(server_api, other_server_api):
    token = apns_token(1)
    mine = server_api.post(URL, {"type": "iOSPush", "token": token}, format="json")
    theirs = other_server_api.post(URL, {"type": "iOSPush", "token": token}, format="json")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


def test_reregistering_moves_the_subscription_to_the_given_user(server_api):
    token = apns_token(1)
    server_api.post(
        URL, {"type": "iOSPush", "token": token, "external_user_id": "a"}, format="json"
    )
    again = server_api.post(
        URL, {"type": "iOSPush", "token": token, "external_user_id": "b"}, format="json"
    )

    assert again.status_code == 200
    assert again.json()["external_user_id"] == "b"
    assert Subscription.objects.get().user.external_user_id == "b"


def test_reregistering_revives_a_subscription_disabled_for_a_dead_token(server_api, app):
    subscription = subscription_create(app.application)
    subscription_disable(subscription_id=subscription.pk, reason="token_invalid")

    again = server_api.post(URL, {"type": "iOSPush", "token": subscription.token}, format="json")

    assert again.status_code == 200
    assert again.json()["enabled"] is True
    assert again.json()["disabled_reason"] == ""


# --- Reading -----------------------------------------------------------------------------------


def test_get_returns_the_token_but_the_list_never_does(server_api, app):
    subscription = subscription_create(app.application, tags={"plan": "gold"})

    one = server_api.get(detail_url(subscription.pk))
    listed = server_api.get(URL)

    assert one.status_code == 200
    assert one.json()["token"] == subscription.token
    assert listed.status_code == 200
    assert set(listed.json()) == {"results", "next"}
    [item] = listed.json()["results"]
    assert item["id"] == str(subscription.pk)
    assert item["tags"] == {"plan": "gold"}
    assert "token" not in item
    assert subscription.token not in listed.content.decode()


def test_the_list_is_the_applications_own_and_filters(server_api, app, other_app):
    ios = subscription_create(app.application, country="KR")
    android = subscription_create(app.application, type="AndroidPush", token=fcm_token(1))
    subscription_create(other_app.application)
    subscription_disable(subscription_id=android.pk, reason="token_invalid")

    everything = server_api.get(URL).json()["results"]
    only_android = server_api.get(URL, {"type": "AndroidPush"}).json()["results"]
    only_kr = server_api.get(URL, {"country": "KR"}).json()["results"]
    only_kr_lower = server_api.get(URL, {"country": "kr"}).json()["results"]
    disabled = server_api.get(URL, {"enabled": "false"}).json()["results"]
    enabled = server_api.get(URL, {"enabled": "true"}).json()["results"]

    assert {item["id"] for item in everything} == {str(ios.pk), str(android.pk)}
    assert [item["id"] for item in only_android] == [str(android.pk)]
    assert [item["id"] for item in only_kr] == [str(ios.pk)]
    assert [item["id"] for item in only_kr_lower] == [str(ios.pk)]
    assert [item["id"] for item in disabled] == [str(android.pk)]
    assert [item["id"] for item in enabled] == [str(ios.pk)]


def test_the_list_is_paginated_with_a_next_link(server_api, app):
    made = {str(subscription_create(app.application).pk) for _ in range(3)}

    first = server_api.get(URL, {"limit": 2}).json()
    second = server_api.get(first["next"]).json()

    assert len(first["results"]) == 2
    assert first["next"].startswith("http")
    assert len(second["results"]) == 1
    assert second["next"] is None
    assert {item["id"] for item in first["results"] + second["results"]} == made


def test_a_bad_list_filter_is_a_validation_error(server_api):
    assert "type" in assert_error(server_api.get(URL, {"type": "Pigeon"}), 400, "validation_error")
    assert "foo" in assert_error(server_api.get(URL, {"foo": "1"}), 400, "validation_error")
    for blank in ("", "null"):  # enabled is true or false, or left out
        details = assert_error(server_api.get(URL, {"enabled": blank}), 400, "validation_error")
        assert "enabled" in details


def test_a_client_key_may_not_list(client_api, app):
    subscription_create(app.application)

    response = client_api.get(URL)

    assert_error(response, 403, "permission_denied")
    assert "results" not in response.content.decode()


def test_a_client_key_may_read_one(client_api, app):
    subscription = subscription_create(app.application)

    response = client_api.get(detail_url(subscription.pk))

    assert response.status_code == 200
    assert response.json()["id"] == str(subscription.pk)


def test_an_unknown_id_is_404(server_api):
    assert_error(
        server_api.get(detail_url("00000000-0000-4000-8000-000000000000")), 404, "not_found"
    )


# --- Updating ----------------------------------------------------------------------------------


def test_put_merges_tags_and_removes_those_set_to_null_or_empty(server_api, app):
    subscription = subscription_create(
        app.application, tags={"plan": "gold", "level": "3", "city": "Seoul"}
    )

    response = server_api.put(
        detail_url(subscription.pk),
        {"tags": {"level": "4", "plan": None, "city": "", "new": "yes", "absent": None}},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == {"level": "4", "new": "yes"}
    subscription.refresh_from_db()
    assert subscription.tags == {"level": "4", "new": "yes"}
    event = SubscriptionEvent.objects.filter(subscription=subscription).last()
    assert (event.kind, event.actor) == ("updated", actor(app))
    assert event.changes["tags"] == [
        {"plan": "gold", "level": "3", "city": "Seoul"},
        {"level": "4", "new": "yes"},
    ]


def test_put_updates_profile_fields(client_api, app):
    subscription = subscription_create(app.application, language="ko")

    response = client_api.put(
        detail_url(subscription.pk),
        {
            "language": "en-US",
            "country": "jp",
            "timezone": "Asia/Tokyo",
            "device": {"model": "Pixel 9", "os": "Android 15", "app_version": "2.5.0"},
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    subscription.refresh_from_db()
    assert (subscription.language, subscription.country, subscription.timezone) == (
        "en-US",
        "JP",
        "Asia/Tokyo",
    )
    assert subscription.device["model"] == "Pixel 9"
    event = SubscriptionEvent.objects.filter(subscription=subscription).last()
    assert (event.kind, event.actor) == ("updated", actor(app, "client"))
    assert event.changes["language"] == ["ko", "en-US"]


def test_put_disables_and_enables_with_an_event_each(server_api, app):
    subscription = subscription_create(app.application)

    off = server_api.put(detail_url(subscription.pk), {"enabled": False}, format="json")
    on = server_api.put(detail_url(subscription.pk), {"enabled": True}, format="json")

    assert off.json()["enabled"] is False
    assert off.json()["disabled_reason"] == "disabled_by_request"
    assert on.json()["enabled"] is True
    assert events(subscription.pk)[-2:] == [("disabled", actor(app)), ("enabled", actor(app))]


def test_put_changes_the_token(server_api, app):
    subscription = subscription_create(app.application, token=apns_token(1))

    response = server_api.put(
        detail_url(subscription.pk), {"token": apns_token(2).upper()}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["token"] == apns_token(2)
    subscription.refresh_from_db()
    assert subscription.token == apns_token(2)
    assert events(subscription.pk)[-1] == ("token_changed", actor(app))
    # The new token is what a re-registration now finds.
    again = server_api.post(URL, {"type": "iOSPush", "token": apns_token(2)}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, str(subscription.pk))


def test_put_rejects_a_token_another_subscription_has(server_api, app):
    subscription = subscription_create(app.application, token=apns_token(1))
    subscription_create(app.application, token=apns_token(2))

    response = server_api.put(detail_url(subscription.pk), {"token": apns_token(2)}, format="json")

    assert "token" in assert_error(response, 400, "validation_error")
    subscription.refresh_from_db()
    assert subscription.token == apns_token(1)


def test_put_checks_the_token_against_the_subscriptions_type(server_api, app):
    subscription = subscription_create(app.application, type="SMS", token="+821012345678")

    response = server_api.put(detail_url(subscription.pk), {"token": apns_token(1)}, format="json")

    assert list(assert_error(response, 400, "validation_error")) == ["token"]


def test_put_may_not_change_the_type(server_api, app):
    subscription = subscription_create(app.application)

    response = server_api.put(detail_url(subscription.pk), {"type": "SMS"}, format="json")

    assert list(assert_error(response, 400, "validation_error")) == ["type"]
    subscription.refresh_from_db()
    assert subscription.type == "iOSPush"


# --- Deleting ----------------------------------------------------------------------------------


def test_delete_returns_204_and_removes_it(server_api, app):
    subscription = subscription_create(app.application)

    response = server_api.delete(detail_url(subscription.pk))

    assert response.status_code == 204
    assert not response.content
    assert not Subscription.objects.filter(pk=subscription.pk).exists()
    assert_error(server_api.get(detail_url(subscription.pk)), 404, "not_found")


def test_a_client_key_may_not_delete(client_api, app):
    subscription = subscription_create(app.application)

    assert_error(client_api.delete(detail_url(subscription.pk)), 403, "permission_denied")
    assert Subscription.objects.filter(pk=subscription.pk).exists()


# --- Another application's subscription --------------------------------------------------------


def _assert_leaks_nothing(response, subscription: Subscription) -> None:
    assert_error(response, 404, "not_found")
    text = response.content.decode()
    assert str(subscription.pk) not in text
    assert subscription.token not in text
    assert "secret-tag" not in text


@pytest.fixture
def foreign_subscription(other_app) -> Subscription:
    return subscription_create(
        other_app.application, token=apns_token(99), tags={"secret-tag": "secret-tag"}
    )


@pytest.mark.parametrize("key", ["server", "client"])
def test_another_applications_subscription_cannot_be_read(app, foreign_subscription, key):

    api = api_client(getattr(app, key).raw)

    _assert_leaks_nothing(api.get(detail_url(foreign_subscription.pk)), foreign_subscription)


@pytest.mark.parametrize("key", ["server", "client"])
def test_another_applications_subscription_cannot_be_updated(app, foreign_subscription, key):

    api = api_client(getattr(app, key).raw)

    response = api.put(
        detail_url(foreign_subscription.pk),
        {"enabled": False, "tags": {"secret-tag": None, "mine": "x"}},
        format="json",
    )

    _assert_leaks_nothing(response, foreign_subscription)
    foreign_subscription.refresh_from_db()
    assert foreign_subscription.enabled is True
    assert foreign_subscription.tags == {"secret-tag": "secret-tag"}
    assert [kind for kind, _ in events(foreign_subscription.pk)] == ["created"]


def test_another_applications_subscription_cannot_be_deleted(server_api, foreign_subscription):
    _assert_leaks_nothing(
        server_api.delete(detail_url(foreign_subscription.pk)), foreign_subscription
    )

    assert Subscription.objects.filter(pk=foreign_subscription.pk).exists()


def test_the_list_never_shows_another_applications_subscriptions(server_api, foreign_subscription):
    response = server_api.get(URL)

    assert response.status_code == 200
    assert response.json() == {"results": [], "next": None}
    assert str(foreign_subscription.pk) not in response.content.decode()


def test_registering_another_applications_token_creates_a_new_one(
    server_api, app, foreign_subscription
):
    response = server_api.post(
        URL, {"type": "iOSPush", "token": foreign_subscription.token}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["id"] != str(foreign_subscription.pk)
    assert response.json()["tags"] == {}
    foreign_subscription.refresh_from_db()
    assert [kind for kind, _ in events(foreign_subscription.pk)] == ["created"]
