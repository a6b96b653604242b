"""A message's category: POST /messages refuses a key the application does not have (400 on
`category`), and GET /messages/{id}, the list and a retry show the one it was sent in."""

from __future__ import annotations

import pytest

from accounts.categories import category_create
from messaging.models import Message
from messaging.services.messages import message_retry
from tests.assertions import assert_error
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages"


@pytest.fixture
def offers(app):
    return category_create(application=app.application, key="offers", name="Offers")


def post(api, subscription, **fields):
    return api.post(
        URL, {"subscription_id": str(subscription.pk), "title": "Hi", **fields}, format="json"
    )


@pytest.mark.parametrize("category", ["ghost", "theirs", "Offers", "offers ", "", "x" * 65, 7])
def test_a_key_the_application_lacks_is_400_on_category(
    app, other_app, server_api, offers, category
):
    category_create(application=other_app.application, key="theirs", name="Theirs")
    subscription = subscription_create(app.application)

    details = assert_error(
        post(server_api, subscription, category=category), 400, "validation_error"
    )

    assert list(details) == ["category"]
    assert not Message.objects.exists()


def test_the_message_shows_its_category_and_one_without_shows_null(app, server_api, offers):
    subscription = subscription_create(app.application)
    [with_category] = post(server_api, subscription, category="offers").json()["messages"]
    [without] = post(server_api, subscription).json()["messages"]

    assert server_api.get(f"{URL}/{with_category['id']}").json()["category"] == "offers"
    assert server_api.get(f"{URL}/{without['id']}").json()["category"] is None
    listed = {m["id"]: m["category"] for m in server_api.get(URL).json()["results"]}
    assert listed == {with_category["id"]: "offers", without["id"]: None}


def test_a_retry_keeps_the_category(app, server_api, offers):
    subscription = subscription_create(app.application)
    [sent] = post(server_api, subscription, category="offers").json()["messages"]
    message = Message.objects.get(pk=sent["id"])
    message.fail()
    message.save(update_fields=["status"])

    retry = message_retry(message=message, actor="test")

    assert retry.category == "offers"
    assert server_api.get(f"{URL}/{retry.pk}").json()["category"] == "offers"
