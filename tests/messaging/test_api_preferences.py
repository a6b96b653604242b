"""A user's preferences (GET/PUT /users/{external_user_id}/preferences): how changes merge, what
is refused, who may call it (server keys; client keys under identity verification with the
user's hash), and that sends, identify and logout, export and erasure keep to them."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from accounts.categories import category_create
from accounts.services import identity_verification_set
from core.exceptions import ValidationFailed
from messaging.models import FrequencyWindow, Message, MessageEvent, Subscription, User
from messaging.services.preferences import (
    preferences_changes,
    preferences_merge,
    subscription_preferences_update,
    user_preferences_update,
)
from tests.assertions import assert_error
from tests.conftest import api_client, subscription_create

pytestmark = pytest.mark.django_db

EMPTY = {"channels": {}, "categories": {}, "quiet_hours": None}


def url(external_user_id: str = "alice") -> str:
    return f"/api/v1/users/{external_user_id}/preferences"


def put(api, body, external_user_id: str = "alice", **headers):
    # json.dumps escapes a lone surrogate, which the test client's encoder cannot write.
    return api.put(
        url(external_user_id), json.dumps(body), content_type="application/json", **headers
    )


@pytest.fixture
def categories(app):
    for key in ("offers", "news"):
        category_create(application=app.application, key=key, name=key.title())
    category_create(application=app.application, key="security", name="Security", required=True)


def stored(external_user_id: str = "alice") -> dict:
    return User.objects.get(external_user_id=external_user_id).preferences


# --- Reading and merging ------------------------------------------------------------------------


def test_an_unknown_user_is_404_and_put_creates_it(app, server_api, other_server_api, categories):
    assert_error(server_api.get(url()), 404, "not_found")

    response = put(server_api, {"channels": {"SMS": False}})

    assert response.status_code == 200, response.content
    assert response.json() == {**EMPTY, "channels": {"SMS": False}}
    assert server_api.get(url()).json() == response.json()
    assert User.objects.get(application=app.application).external_user_id == "alice"
    assert_error(other_server_api.get(url()), 404, "not_found")


def test_a_user_who_never_chose_has_every_part_empty(app, server_api):
    subscription_create(app.application, external_user_id="alice")

    assert server_api.get(url()).json() == EMPTY


def test_each_part_merges_and_null_removes_what_it_names(app, server_api, categories):
    put(
        server_api,
        {
            "channels": {"SMS": False, "Email": True},
            "categories": {"offers": {"enabled": True, "channels": {"SMS": True, "Email": False}}},
            "quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Asia/Seoul"},
        },
    )

    response = put(
        server_api,
        {
            "channels": {"Email": None, "KakaoTalk": False},
            "categories": {
                "offers": {"channels": {"SMS": None, "iOSPush": False}},
                "news": {"enabled": False},
            },
            "quiet_hours": {"timezone": None, "start": "23:30"},
        },
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "channels": {"SMS": False, "KakaoTalk": False},
        "categories": {
            "offers": {"enabled": True, "channels": {"Email": False, "iOSPush": False}},
            "news": {"enabled": False},
        },
        "quiet_hours": {"start": "23:30", "end": "08:00"},
    }
    # Emptied entries and parts are left out of what is stored.
    response = put(
        server_api,
        {
            "channels": None,
            "categories": {"offers": {"enabled": None, "channels": None}},
            "quiet_hours": None,
        },
    )
    assert response.json() == {**EMPTY, "categories": {"news": {"enabled": False}}}
    assert stored() == {"categories": {"news": {"enabled": False}}}
    assert put(server_api, {"categories": {"news": None}}).json() == EMPTY
    assert stored() == {}


def test_an_empty_body_changes_nothing(app, server_api, categories):
    put(server_api, {"channels": {"SMS": False}})

    assert put(server_api, {}).json()["channels"] == {"SMS": False}


def test_an_entry_of_a_deleted_category_can_still_be_removed(app, server_api, categories):
    put(server_api, {"categories": {"offers": {"enabled": False}}})
    server_api.delete("/api/v1/categories/offers")

    assert server_api.get(url()).json()["categories"] == {"offers": {"enabled": False}}
    refused = put(server_api, {"categories": {"offers": {"enabled": True}}})
    assert "categories.offers" in assert_error(refused, 400, "validation_error")
    assert put(server_api, {"categories": {"offers": None}}).json() == EMPTY


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channels": {"Fax": False}}, "channels"),
        ({"channels": {"SMS": "no"}}, "channels.SMS"),
        ({"channels": {"SMS": 0}}, "channels.SMS"),
        ({"channels": ["SMS"]}, "channels"),
        ({"categories": {"ghost": {"enabled": True}}}, "categories.ghost"),
        ({"categories": {"Offers": {"enabled": True}}}, "categories"),
        ({"categories": {"offers": {"enabled": "yes"}}}, "categories.offers.enabled"),
        ({"categories": {"offers": {"muted": True}}}, "categories.offers.muted"),
        ({"categories": {"offers": True}}, "categories.offers"),
        ({"categories": {"offers": {"channels": {"Pager": True}}}}, "categories.offers.channels"),
        (
            {"categories": {"offers": {"channels": {"SMS": 1}}}},
            "categories.offers.channels.SMS",
        ),
        ({"categories": "offers"}, "categories"),
        ({"quiet_hours": {"start": "24:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "7:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00", "end": "08:00\n"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": None, "end": "08:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Mars/Olympus"}},
         "quiet_hours.timezone"),
        ({"quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "../etc"}},
         "quiet_hours.timezone"),
        ({"quiet_hours": {"start": "22:00", "end": "08:00", "timezone": 9}},
         "quiet_hours.timezone"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "22:00", "end": "08:00", "days": [1]}}, "quiet_hours.days"),
        ({"quiet_hours": "22-08"}, "quiet_hours"),
        ({"channels": {"\ud800": True}}, "channels"),
        ({"timezone": "UTC"}, "timezone"),
        (["channels"], "non_field_errors"),
    ],
)  # fmt: skip
def test_what_breaks_a_rule_is_a_validation_error_and_changes_nothing(
    app, server_api, categories, body, field
):
    details = assert_error(put(server_api, body), 400, "validation_error")

    assert field in details, details
    assert not User.objects.exists()  # not even created


def test_every_problem_is_named_at_once(app, server_api, categories):
    details = assert_error(
        put(
            server_api,
            {"channels": {"SMS": 1, "Fax": True}, "quiet_hours": {"start": "25:00", "end": "x"}},
        ),
        400,
        "validation_error",
    )

    assert set(details) == {"channels.SMS", "channels", "quiet_hours.start", "quiet_hours.end"}


def test_an_external_id_too_long_is_400(server_api):
    assert "external_user_id" in assert_error(
        server_api.get(url("x" * 256)), 400, "validation_error"
    )
    assert "external_user_id" in assert_error(
        put(server_api, {}, external_user_id="x" * 256), 400, "validation_error"
    )


def test_an_external_id_with_a_slash_is_one_user(app, server_api, categories):
    put(server_api, {"channels": {"SMS": False}}, external_user_id="team/kim")

    assert stored("team/kim") == {"channels": {"SMS": False}}
    assert server_api.get(url("team/kim")).json()["channels"] == {"SMS": False}


# --- Who may call it ----------------------------------------------------------------------------


def user_hash(secret: str, external_user_id: str) -> str:
    return hmac.new(secret.encode(), external_user_id.encode(), hashlib.sha256).hexdigest()


def test_a_client_key_gets_403_without_identity_verification(app, client_api, server_api):
    put(server_api, {"channels": {"SMS": False}})

    assert_error(client_api.get(url()), 403, "permission_denied")
    assert_error(put(client_api, {"channels": {"SMS": True}}), 403, "permission_denied")
    assert stored() == {"channels": {"SMS": False}}


def test_under_identity_verification_a_client_key_needs_the_users_hash(app, client_api):
    secret = identity_verification_set(application=app.application, enabled=True)
    good = user_hash(secret, "alice")

    assert_error(client_api.get(url()), 401, "authentication_failed")
    assert_error(put(client_api, {"channels": {"SMS": False}}), 401, "authentication_failed")
    wrong = user_hash(secret, "bob")
    assert_error(client_api.get(url(), HTTP_X_USER_HASH=wrong), 401, "authentication_failed")
    assert_error(
        put(client_api, {"channels": {"SMS": False}}, HTTP_X_USER_HASH=wrong),
        401,
        "authentication_failed",
    )
    assert not User.objects.exists()

    response = put(client_api, {"channels": {"SMS": False}}, HTTP_X_USER_HASH=good)

    assert response.status_code == 200, response.content
    assert client_api.get(url(), HTTP_X_USER_HASH=good).json()["channels"] == {"SMS": False}
    # The hash proves one user only.
    assert_error(client_api.get(url("bob"), HTTP_X_USER_HASH=good), 401, "authentication_failed")


def test_another_applications_user_is_404_even_with_its_hash(app, other_app, server_api):
    secret = identity_verification_set(application=other_app.application, enabled=True)
    put(server_api, {"channels": {"SMS": False}})
    theirs = api_client(other_app.client.raw)

    response = theirs.get(url(), HTTP_X_USER_HASH=user_hash(secret, "alice"))

    assert_error(response, 404, "not_found")


def test_without_a_key_it_is_401(anonymous_api):
    assert_error(anonymous_api.get(url()), 401, "authentication_failed")


# --- The sends keep to them ---------------------------------------------------------------------


def send(api, subscription, category="offers"):
    body = {"subscription_id": str(subscription.pk), "title": "Hi", "category": category}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def test_a_send_with_a_category_follows_what_the_api_set(app, server_api, categories):
    subscription = subscription_create(app.application, external_user_id="alice")
    put(server_api, {"categories": {"offers": {"channels": {"iOSPush": False}}}})

    refused = send(server_api, subscription)
    news = send(server_api, subscription, "news")
    required = send(server_api, subscription, "security")

    assert refused["messages"] == [] and refused["skipped_by_reason"]["opted_out"] == 1
    assert len(news["messages"]) == 1 and len(required["messages"]) == 1


def test_quiet_hours_set_by_the_api_hold_a_send(app, server_api, categories):
    subscription = subscription_create(app.application, external_user_id="alice")
    put(server_api, {"quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}})

    [message] = send(server_api, subscription)["messages"]

    assert Message.objects.get(pk=message["id"]).send_after is not None
    assert MessageEvent.objects.filter(message_id=message["id"], type="held").exists()


def test_identify_brings_the_users_preferences_and_logout_takes_them_away(
    app, server_api, client_api, categories
):
    device = subscription_create(app.application)
    put(server_api, {"channels": {"iOSPush": False}})
    identify = {"external_user_id": "alice", "subscription_id": str(device.pk)}

    before = send(server_api, device)
    assert client_api.post("/api/v1/users/identify", identify, format="json").status_code == 200
    identified = send(server_api, device)
    logout = {"subscription_id": str(device.pk)}
    assert client_api.post("/api/v1/users/logout", logout, format="json").status_code == 200
    logged_out = send(server_api, device)

    assert len(before["messages"]) == 1
    assert identified["messages"] == [] and identified["skipped_by_reason"]["opted_out"] == 1
    assert len(logged_out["messages"]) == 1
    # The preferences stayed with the user, none moved to the device.
    assert stored() == {"channels": {"iOSPush": False}}
    assert Subscription.objects.get(pk=device.pk).preferences == {}


def test_a_subscription_without_a_user_follows_its_own(app, server_api, categories):
    address = subscription_create(app.application, type="Email", token="kim@example.com")

    subscription_preferences_update(
        subscription=address, changes={"categories": {"offers": {"enabled": False}}}, actor="test"
    )

    assert Subscription.objects.get(pk=address.pk).preferences == {
        "categories": {"offers": {"enabled": False}}
    }
    assert send(server_api, address)["skipped_by_reason"]["opted_out"] == 1
    assert len(send(server_api, address, "news")["messages"]) == 1


# --- The service's other callers ----------------------------------------------------------------


def test_changes_computed_from_a_whole_object_merge_into_it(app, categories):
    current = {
        "channels": {"SMS": False, "Email": True},
        "categories": {"offers": {"enabled": True, "channels": {"SMS": True}}},
        "quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Asia/Seoul"},
    }
    wanted = {
        "channels": {"SMS": False},
        "categories": {"offers": {"channels": {"Email": False}}, "news": {"enabled": False}},
        "quiet_hours": {"start": "21:00", "end": "08:00"},
    }

    changes = preferences_changes(current=current, wanted=wanted)

    assert preferences_merge(current=current, changes=changes, application=app.application) == (
        wanted
    )
    assert preferences_changes(current=current, wanted={}) == dict.fromkeys(current)
    assert current["channels"] == {"SMS": False, "Email": True}  # left as it was


def test_the_service_creates_the_user_and_keeps_the_rest_on_error(app, categories):
    user_preferences_update(
        application=app.application,
        external_user_id="alice",
        changes={"channels": {"SMS": False}},
        actor="test",
    )

    with pytest.raises(ValidationFailed) as caught:
        user_preferences_update(
            application=app.application,
            external_user_id="alice",
            changes={"channels": {"Email": False}, "categories": {"ghost": {"enabled": True}}},
            actor="test",
        )

    assert caught.value.details == {
        "categories.ghost": [
            "No category 'ghost' in this application; create it with POST /categories."
        ]
    }
    assert stored() == {"channels": {"SMS": False}}


# --- Export and erasure -------------------------------------------------------------------------


def test_the_export_holds_the_users_and_its_subscriptions_preferences(app, server_api, categories):
    device = subscription_create(app.application, type="Email", token="a@example.com")
    subscription_preferences_update(
        subscription=device, changes={"channels": {"Email": False}}, actor="test"
    )
    server_api.post(
        "/api/v1/users/identify",
        {"external_user_id": "alice", "subscription_id": str(device.pk)},
        format="json",
    )
    put(server_api, {"categories": {"news": {"enabled": False}}})

    response = server_api.get("/api/v1/users/alice/export")
    document = json.loads(b"".join(response.streaming_content))

    assert document["user"]["preferences"] == {"categories": {"news": {"enabled": False}}}
    [exported] = document["subscriptions"]
    assert exported["preferences"] == {"channels": {"Email": False}}


def test_the_erasure_deletes_the_users_frequency_windows(app, server_api, categories):
    app.application.frequency_cap = {"max": 5, "per_seconds": 3600}
    app.application.save()
    device = subscription_create(app.application)
    send(server_api, device)  # counted for the device, which had no user yet
    server_api.post(
        "/api/v1/users/identify",
        {"external_user_id": "alice", "subscription_id": str(device.pk)},
        format="json",
    )
    send(server_api, device)  # counted for the user
    someone = subscription_create(app.application, external_user_id="bob")
    send(server_api, someone)
    alice = User.objects.get(external_user_id="alice")
    assert set(FrequencyWindow.objects.values_list("recipient", flat=True)) == {
        device.pk,
        alice.pk,
        someone.user_id,
    }

    assert server_api.delete("/api/v1/users/alice").status_code == 204

    assert list(FrequencyWindow.objects.values_list("recipient", flat=True)) == [someone.user_id]
