"""POST /users/identify, POST /users/logout and GET /users/{external_user_id}/subscriptions."""

from __future__ import annotations

import pytest

from messaging.models import Subscription, SubscriptionEvent, User
from tests.assertions import assert_error
from tests.conftest import api_client, subscription_create

IDENTIFY = "/api/v1/users/identify"
LOGOUT = "/api/v1/users/logout"

pytestmark = pytest.mark.django_db


def user_subscriptions_url(external_user_id: str) -> str:
    return f"/api/v1/users/{external_user_id}/subscriptions"


def actor(app_keys, scope: str = "server") -> str:
    return f"api_key:{getattr(app_keys, scope).api_key.prefix}"


def listed_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


# --- identify ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["server", "client"])
def test_identify_creates_the_user_and_ties_the_subscription(app, key):
    subscription = subscription_create(app.application)

    response = api_client(getattr(app, key).raw).post(
        IDENTIFY,
        {"external_user_id": "user-123", "subscription_id": str(subscription.pk)},
        format="json",
    )

    assert response.status_code == 200, response.json()
    user = User.objects.get(application=app.application, external_user_id="user-123")
    body = response.json()
    assert body["id"] == str(user.pk)
    assert body["external_user_id"] == "user-123"
    assert body["subscription_ids"] == [str(subscription.pk)]
    subscription.refresh_from_db()
    assert subscription.user == user
    event = SubscriptionEvent.objects.filter(subscription=subscription).last()
    assert (event.kind, event.actor) == ("identified", actor(app, key))
    assert event.changes == {"external_user_id": [None, "user-123"]}


def test_identify_moves_a_subscription_between_users(server_api, app):
    subscription = subscription_create(app.application, external_user_id="alice")
    stays = subscription_create(app.application, external_user_id="alice")

    response = server_api.post(
        IDENTIFY,
        {"external_user_id": "bob", "subscription_id": str(subscription.pk)},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["subscription_ids"] == [str(subscription.pk)]
    assert listed_ids(server_api.get(user_subscriptions_url("alice"))) == [str(stays.pk)]
    assert listed_ids(server_api.get(user_subscriptions_url("bob"))) == [str(subscription.pk)]
    detail = server_api.get(f"/api/v1/subscriptions/{subscription.pk}").json()
    assert detail["external_user_id"] == "bob"
    event = SubscriptionEvent.objects.filter(subscription=subscription).last()
    assert event.changes == {"external_user_id": ["alice", "bob"]}


def test_identify_with_the_current_user_changes_nothing(server_api, app):
    subscription = subscription_create(app.application, external_user_id="alice")
    before = SubscriptionEvent.objects.filter(subscription=subscription).count()

    response = server_api.post(
        IDENTIFY,
        {"external_user_id": "alice", "subscription_id": str(subscription.pk)},
        format="json",
    )

    assert response.status_code == 200
    assert User.objects.filter(application=app.application).count() == 1
    assert SubscriptionEvent.objects.filter(subscription=subscription).count() == before


def test_the_same_external_id_in_two_applications_is_two_users(app, other_app):
    mine = subscription_create(app.application)
    theirs = subscription_create(other_app.application)

    api_client(app.server.raw).post(
        IDENTIFY, {"external_user_id": "u", "subscription_id": str(mine.pk)}, format="json"
    )
    api_client(other_app.server.raw).post(
        IDENTIFY, {"external_user_id": "u", "subscription_id": str(theirs.pk)}, format="json"
    )

    assert User.objects.filter(external_user_id="u").count() == 2
    assert listed_ids(api_client(app.server.raw).get(user_subscriptions_url("u"))) == [str(mine.pk)]


def test_identify_needs_a_uuid_subscription_id(server_api):
    response = server_api.post(
        IDENTIFY, {"external_user_id": "user-123", "subscription_id": "not-a-uuid"}, format="json"
    )

    assert list(assert_error(response, 400, "validation_error")) == ["subscription_id"]
    assert not User.objects.exists()


def test_identify_with_an_unknown_subscription_is_404(server_api):
    response = server_api.post(
        IDENTIFY,
        {"external_user_id": "user-123", "subscription_id": "00000000-0000-4000-8000-000000000000"},
        format="json",
    )

    assert_error(response, 404, "not_found")
    assert not User.objects.exists()


def test_identify_needs_both_fields(server_api):
    details = assert_error(server_api.post(IDENTIFY, {}, format="json"), 400, "validation_error")

    assert set(details) == {"external_user_id", "subscription_id"}


# --- logout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["server", "client"])
def test_logout_leaves_the_subscription_without_a_user(app, key):
    api = api_client(getattr(app, key).raw)
    subscription = subscription_create(app.application, external_user_id="alice")

    response = api.post(LOGOUT, {"subscription_id": str(subscription.pk)}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["id"] == str(subscription.pk)
    assert response.json()["external_user_id"] is None
    subscription.refresh_from_db()
    assert subscription.user is None
    # The user stays; only the tie is gone.
    listed = api_client(app.server.raw).get(user_subscriptions_url("alice"))
    assert listed_ids(listed) == []
    event = SubscriptionEvent.objects.filter(subscription=subscription).last()
    assert (event.kind, event.actor) == ("logged_out", actor(app, key))
    assert event.changes == {"external_user_id": ["alice", None]}


def test_identify_then_logout_round_trip(server_api, app):
    subscription = subscription_create(app.application)

    server_api.post(
        IDENTIFY,
        {"external_user_id": "carol", "subscription_id": str(subscription.pk)},
        format="json",
    )
    assert listed_ids(server_api.get(user_subscriptions_url("carol"))) == [str(subscription.pk)]

    server_api.post(LOGOUT, {"subscription_id": str(subscription.pk)}, format="json")
    assert listed_ids(server_api.get(user_subscriptions_url("carol"))) == []
    detail = server_api.get(f"/api/v1/subscriptions/{subscription.pk}").json()
    assert detail["external_user_id"] is None
    kinds = list(
        SubscriptionEvent.objects.filter(subscription=subscription).values_list("kind", flat=True)
    )
    assert kinds == ["created", "identified", "logged_out"]


def test_logout_of_a_subscription_without_a_user_is_a_quiet_200(server_api, app):
    subscription = subscription_create(app.application)

    response = server_api.post(LOGOUT, {"subscription_id": str(subscription.pk)}, format="json")

    assert response.status_code == 200
    assert SubscriptionEvent.objects.filter(subscription=subscription).count() == 1


def test_logout_needs_a_uuid(server_api):
    details = assert_error(
        server_api.post(LOGOUT, {"subscription_id": "123"}, format="json"), 400, "validation_error"
    )

    assert list(details) == ["subscription_id"]


def test_logout_of_an_unknown_subscription_is_404(server_api):
    response = server_api.post(
        LOGOUT, {"subscription_id": "00000000-0000-4000-8000-000000000000"}, format="json"
    )

    assert_error(response, 404, "not_found")


# --- a user's subscriptions ----------------------------------------------------------------------


def test_a_users_subscriptions_are_listed_without_tokens(server_api, app):
    first = subscription_create(app.application, external_user_id="dave", tags={"a": "1"})
    second = subscription_create(
        app.application, type="Email", token="dave@example.com", external_user_id="dave"
    )
    subscription_create(app.application, external_user_id="erin")

    response = server_api.get(user_subscriptions_url("dave"))

    assert set(listed_ids(response)) == {str(first.pk), str(second.pk)}
    assert response.json()["next"] is None
    for item in response.json()["results"]:
        assert "token" not in item
        assert item["external_user_id"] == "dave"
    assert first.token not in response.content.decode()
    assert "dave@example.com" not in response.content.decode()


def test_an_external_user_id_with_odd_characters_works(server_api, app):
    subscription = subscription_create(app.application, external_user_id="kim@example.com")

    assert listed_ids(server_api.get(user_subscriptions_url("kim@example.com"))) == [
        str(subscription.pk)
    ]


def test_an_unknown_user_is_404(server_api):
    assert_error(server_api.get(user_subscriptions_url("nobody")), 404, "not_found")


def test_a_client_key_may_not_list_a_users_subscriptions(client_api, app):
    subscription_create(app.application, external_user_id="alice")

    response = client_api.get(user_subscriptions_url("alice"))

    assert_error(response, 403, "permission_denied")


# --- another application's objects ---------------------------------------------------------------


@pytest.fixture
def foreign(other_app) -> Subscription:
    return subscription_create(other_app.application, external_user_id="their-user")


def _assert_leaks_nothing(response, subscription: Subscription) -> None:
    assert_error(response, 404, "not_found")
    text = response.content.decode()
    assert str(subscription.pk) not in text
    assert subscription.token not in text
    assert str(subscription.user_id) not in text


@pytest.mark.parametrize("key", ["server", "client"])
def test_identify_with_another_applications_subscription_is_404(app, foreign, key):
    response = api_client(getattr(app, key).raw).post(
        IDENTIFY,
        {"external_user_id": "intruder", "subscription_id": str(foreign.pk)},
        format="json",
    )

    _assert_leaks_nothing(response, foreign)
    foreign.refresh_from_db()
    assert foreign.user.external_user_id == "their-user"
    assert not User.objects.filter(external_user_id="intruder").exists()


@pytest.mark.parametrize("key", ["server", "client"])
def test_logout_of_another_applications_subscription_is_404(app, foreign, key):
    response = api_client(getattr(app, key).raw).post(
        LOGOUT, {"subscription_id": str(foreign.pk)}, format="json"
    )

    _assert_leaks_nothing(response, foreign)
    foreign.refresh_from_db()
    assert foreign.user.external_user_id == "their-user"


def test_another_applications_user_is_404(server_api, foreign):
    _assert_leaks_nothing(server_api.get(user_subscriptions_url("their-user")), foreign)
