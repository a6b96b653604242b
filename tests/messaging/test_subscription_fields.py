"""A subscription's profile rules (messaging.subscription_fields) are written once: the
services refuse what the API refuses, with the API's messages, whoever calls them."""

from __future__ import annotations

import pytest

from core.exceptions import ValidationFailed
from messaging.services.subscriptions import (
    SYSTEM,
    subscription_changes_check,
    subscription_register,
    subscription_update,
)
from tests.assertions import assert_error
from tests.conftest import api_client, apns_token, subscription_create

pytestmark = pytest.mark.django_db

REFUSED = [
    {"tags": {"plan": 5}},
    {"tags": ["gold"]},
    {"tags": {"": "x"}},
    {"tags": {"k" * 65: "x"}},
    {"tags": {"plan": "x" * 256}},
    {"tags": {"plan": "a\x00b"}},
    {"tags": {f"t{n}": "x" for n in range(101)}},
    {"language": "not a language!!"},
    {"language": "x" * 17},
    {"country": "zz"},
    {"timezone": "Mars/Olympus"},
    {"timezone": 5},
    {"device": {"model": 5, "color": "red"}},
    {"device": {"os": "x" * 101}},
    {"device": ["phone"]},
]


@pytest.mark.parametrize("change", REFUSED)
def test_the_service_refuses_what_the_api_refuses_in_its_words(app, change):
    subscription = subscription_create(app.application, tags={"plan": "gold"}, country="KR")
    response = api_client(app.server.raw).put(
        f"/api/v1/subscriptions/{subscription.pk}", change, format="json"
    )
    api_details = assert_error(response, 400, "validation_error")

    with pytest.raises(ValidationFailed) as caught:
        subscription_update(subscription=subscription, actor=SYSTEM, **change)

    assert caught.value.details == api_details
    assert subscription.events.count() == 1  # created; nothing changed


def test_registering_checks_the_profile_too(app):
    with pytest.raises(ValidationFailed) as caught:
        subscription_register(
            application=app.application,
            actor=SYSTEM,
            type="iOSPush",
            token=apns_token(),
            language="ko!",
            timezone="Mars/Olympus",
        )

    assert set(caught.value.details) == {"language", "timezone"}


def test_the_rules_normalize_as_the_api_stores(app):
    changes = subscription_changes_check(
        tags={"plan": " gold ", "old": None, "gone": ""},
        country="jp",
        language=" ko ",
        device={"model": " Pixel "},
        enabled=False,
    )

    assert changes == {
        "tags": {"plan": "gold", "old": None, "gone": ""},
        "country": "JP",
        "language": "ko",
        "device": {"model": "Pixel"},
        "enabled": False,
    }
