"""/categories (server key): create, list, read, change and delete an application's categories,
what each refuses, the audit rows they leave, and what a deleted category's key becomes for
the messages and templates that still name it."""

from __future__ import annotations

import json
import string

import pytest

from accounts import audit
from accounts.categories import MAX_CATEGORIES
from accounts.models import AuditEntry, Category
from messaging.models import Message
from templates_app.services import template_create
from tests.assertions import assert_error
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

LANGUAGES = [a + b for a in "abcdefgh" for b in string.ascii_lowercase]  # well-formed tags

URL = "/api/v1/categories"
OFFERS = {
    "key": "offers",
    "name": "Offers and news",
    "required": False,
    "default_enabled": True,
    "translations": {"ko": "혜택 및 소식", "pt_br": "Ofertas"},
}


def create(api, **fields):
    # json.dumps escapes a lone surrogate, which the test client's encoder cannot write.
    return api.post(URL, json.dumps({**OFFERS, **fields}), content_type="application/json")


def rows(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def test_create_then_read_it_back(app, server_api):
    response = create(server_api)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "key": "offers",
        "name": "Offers and news",
        "required": False,
        "default_enabled": True,
        # Tags in their usual case.
        "translations": {"ko": "혜택 및 소식", "pt-BR": "Ofertas"},
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert server_api.get(f"{URL}/offers").json() == body
    category = Category.objects.get(application=app.application)
    assert category.name_in("pt-BR") == "Ofertas" and category.name_in("ko-KR") == "혜택 및 소식"
    (entry,) = rows(audit.CATEGORY_CREATED)
    assert (entry.object_type, entry.object_id) == ("category", "offers")
    assert entry.actor == f"api_key:{app.server.api_key.prefix}"
    assert entry.details == {
        "key": "offers",
        "name": "Offers and news",
        "required": False,
        "default_enabled": True,
        "translations": ["ko", "pt-BR"],
    }


def test_only_key_and_name_are_needed(server_api):
    response = server_api.post(URL, {"key": "receipts", "name": " Receipts "}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["required"], body["default_enabled"], body["translations"]) == (
        "Receipts",
        False,
        True,
        {},
    )


def test_a_taken_key_is_a_validation_error_on_key(app, other_app, server_api, other_server_api):
    assert create(server_api).status_code == 201
    assert create(other_server_api).status_code == 201  # keys are per application

    details = assert_error(create(server_api, name="Again"), 400, "validation_error")

    assert list(details) == ["key"]
    assert Category.objects.filter(application=app.application).count() == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"key": "Offers"}, "key"),
        ({"key": "-offers"}, "key"),
        ({"key": "offers\n"}, "key"),
        ({"key": " offers"}, "key"),
        ({"key": "a.b"}, "key"),
        ({"key": "x" * 65}, "key"),
        ({"key": ""}, "key"),
        ({"key": 5}, "key"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"required": "yes"}, "required"),
        ({"default_enabled": 1}, "default_enabled"),
        ({"translations": ["ko"]}, "translations"),
        ({"translations": {"korean!": "x"}}, "translations"),
        ({"translations": {" ko": "x"}}, "translations"),
        ({"translations": {"ko": ""}}, "translations.ko"),
        ({"translations": {"ko": "  "}}, "translations.ko"),
        ({"translations": {"ko": 5}}, "translations.ko"),
        ({"translations": {"ko": "x" * 201}}, "translations.ko"),
        ({"translations": {"ko": "\ud800"}}, "translations"),
        ({"translations": {"ko": "a", "KO": "b"}}, "translations.KO"),
        ({"translations": dict.fromkeys(LANGUAGES[:101], "x")}, "translations"),
        ({"color": "red"}, "color"),
    ],
)
def test_create_refuses_what_breaks_a_rule(app, server_api, fields, field):
    details = assert_error(create(server_api, **fields), 400, "validation_error")

    assert field in details, details
    assert not Category.objects.exists()
    assert not rows(audit.CATEGORY_CREATED)


def test_an_application_has_at_most_200_categories(app, server_api):
    Category.objects.bulk_create(
        Category(application=app.application, key=f"c{n}", name=f"C{n}")
        for n in range(MAX_CATEGORIES)
    )

    details = assert_error(create(server_api), 400, "validation_error")

    assert "key" in details


def test_the_list_is_paginated_by_key_and_only_the_applications(app, other_app, server_api):
    for key in ("news", "alerts", "offers"):
        create(server_api, key=key)
    Category.objects.create(application=other_app.application, key="theirs", name="Theirs")

    first = server_api.get(URL, {"limit": 2}).json()
    second = server_api.get(first["next"]).json()

    assert [c["key"] for c in first["results"]] == ["alerts", "news"]
    assert [c["key"] for c in second["results"]] == ["offers"] and second["next"] is None
    assert_error(server_api.get(URL, {"limit": 0}), 400, "validation_error")
    assert_error(server_api.get(URL, {"cursor": "forged"}), 400, "validation_error")
    assert_error(server_api.get(URL, {"color": "red"}), 400, "validation_error")


def test_put_changes_the_fields_given_and_audits_old_and_new(app, server_api):
    create(server_api)

    response = server_api.put(
        f"{URL}/offers",
        {"default_enabled": False, "translations": {"ko": "혜택", "ja": "お得"}},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["default_enabled"]) == ("Offers and news", False)
    assert body["translations"] == {"ko": "혜택", "ja": "お得"}
    (entry,) = rows(audit.CATEGORY_CHANGED)
    assert entry.object_id == "offers"
    assert entry.details == {
        "key": "offers",
        "changes": {"default_enabled": [True, False]},
        "translations": ["ja", "ko", "pt-BR"],
    }
    # The same values again: nothing to record.
    server_api.put(f"{URL}/offers", {"default_enabled": False}, format="json")
    assert server_api.put(f"{URL}/offers", {}, format="json").status_code == 200
    assert len(rows(audit.CATEGORY_CHANGED)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "deals"}, "key"),
        ({"name": ""}, "name"),
        ({"required": None}, "required"),
        ({"translations": {"xx-": "x"}}, "translations"),
        ({"default_enabled": "false"}, "default_enabled"),
    ],
)
def test_put_refuses_the_key_and_bad_values(app, server_api, body, field):
    create(server_api)

    details = assert_error(
        server_api.put(f"{URL}/offers", body, format="json"), 400, "validation_error"
    )

    assert field in details
    assert Category.objects.get().key == "offers"
    assert not rows(audit.CATEGORY_CHANGED)


def test_delete_is_204_and_audited(app, server_api):
    create(server_api)

    response = server_api.delete(f"{URL}/offers")

    assert response.status_code == 204 and response.content == b""
    assert not Category.objects.exists()
    (entry,) = rows(audit.CATEGORY_DELETED)
    assert entry.details == {"key": "offers", "name": "Offers and news"}
    assert_error(server_api.delete(f"{URL}/offers"), 404, "not_found")


@pytest.mark.parametrize("key", ["nope", "Offers", "a.b", "x" * 300, "%00", "%F0%9F%98%80"])
def test_unknown_keys_and_another_applications_are_404(app, server_api, other_server_api, key):
    create(server_api)

    for api, path in ((server_api, key), (other_server_api, "offers")):
        assert_error(api.get(f"{URL}/{path}"), 404, "not_found")
        assert_error(api.put(f"{URL}/{path}", {"name": "x"}, format="json"), 404, "not_found")
        assert_error(api.delete(f"{URL}/{path}"), 404, "not_found")
    assert Category.objects.get().name == "Offers and news"


def test_client_keys_get_403(app, client_api, server_api):
    create(server_api)

    assert_error(client_api.get(URL), 403, "permission_denied")
    assert_error(create(client_api, key="deals"), 403, "permission_denied")
    assert_error(client_api.get(f"{URL}/offers"), 403, "permission_denied")
    assert_error(
        client_api.put(f"{URL}/offers", {"name": "x"}, format="json"), 403, "permission_denied"
    )
    assert_error(client_api.delete(f"{URL}/offers"), 403, "permission_denied")
    assert Category.objects.count() == 1


def test_without_a_key_it_is_401(anonymous_api):
    assert_error(anonymous_api.get(URL), 401, "authentication_failed")


def test_a_deleted_key_named_by_a_template_makes_its_sends_400(app, server_api):
    create(server_api)
    version = template_create(
        application=app.application, name="promo", body_template="Hi", category="offers"
    )
    subscription = subscription_create(app.application)
    send = {"subscription_id": str(subscription.pk), "template_id": str(version.template_id)}
    assert server_api.post("/api/v1/messages", send, format="json").status_code == 202

    server_api.delete(f"{URL}/offers")

    # The template keeps naming it; its sends are refused rather than sent past the rules.
    details = assert_error(
        server_api.post("/api/v1/messages", send, format="json"), 400, "validation_error"
    )
    assert "category" in details
    assert Message.objects.count() == 1
    response = server_api.get(f"/api/v1/templates/{version.template_id}")
    assert response.json()["category"] == "offers"
    # Created again, the key works again.
    create(server_api)
    assert server_api.post("/api/v1/messages", send, format="json").status_code == 202
