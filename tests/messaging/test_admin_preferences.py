"""The "App users" admin page shows a user's preferences and edits them as a whole, checked by
the API's rules (messaging.services.preferences): what the API refuses is a form error."""

from __future__ import annotations

import json

import pytest

from accounts.categories import category_create
from messaging.models import User
from messaging.services.preferences import user_preferences_update
from tests.admin_pages import page_data

pytestmark = pytest.mark.django_db

PREFERENCES = {
    "channels": {"SMS": False},
    "categories": {"offers": {"enabled": True, "channels": {"Email": False}}},
    "quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Asia/Seoul"},
}


@pytest.fixture
def user(app) -> User:
    category_create(application=app.application, key="offers", name="Offers")
    category_create(application=app.application, key="news", name="News")
    return user_preferences_update(
        application=app.application, external_user_id="kim", changes=PREFERENCES, actor="test"
    )


def change_url(user: User) -> str:
    return f"/admin/messaging/user/{user.pk}/change/"


def test_the_page_shows_them_and_saving_it_unchanged_keeps_them(admin_client, user):
    data = page_data(admin_client.get(change_url(user)))

    assert json.loads(data["preferences"]) == PREFERENCES
    assert admin_client.post(change_url(user), data).status_code == 302
    user.refresh_from_db()
    assert user.preferences == PREFERENCES


def test_an_edit_replaces_them_as_a_whole(admin_client, user):
    data = page_data(admin_client.get(change_url(user)))
    data["preferences"] = json.dumps(
        {"categories": {"news": {"enabled": False}, "offers": {"enabled": True}}}
    )

    response = admin_client.post(change_url(user), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.preferences == {
        "categories": {"news": {"enabled": False}, "offers": {"enabled": True}}
    }
    data = page_data(admin_client.get(change_url(user)))
    data["preferences"] = ""
    assert admin_client.post(change_url(user), data).status_code == 302
    user.refresh_from_db()
    assert user.preferences == {}


@pytest.mark.parametrize(
    ("preferences", "fragment"),
    [
        ({"channels": {"Fax": False}}, "channels: 'Fax' is not a channel type"),
        ({"categories": {"ghost": {"enabled": True}}}, "categories.ghost: No category 'ghost'"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00"}}, "Quiet hours need a start and an end"),
        ({"mood": "happy"}, "mood: Unknown field."),
        (["channels"], "Preferences are a JSON object"),
    ],
)
def test_what_the_api_refuses_is_a_form_error(admin_client, user, preferences, fragment):
    data = page_data(admin_client.get(change_url(user)))
    data["preferences"] = json.dumps(preferences)

    response = admin_client.post(change_url(user), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["preferences"]
    assert any(fragment in error for error in errors), errors
    user.refresh_from_db()
    assert user.preferences == PREFERENCES


def test_other_fields_stay_read_only(admin_client, user):
    data = page_data(admin_client.get(change_url(user)))
    data.update({"external_user_id": "mallory", "tags_display": "{}"})

    admin_client.post(change_url(user), data)

    user.refresh_from_db()
    assert user.external_user_id == "kim"
