"""A template's category: set, changed and removed by POST/PUT /templates and the admin (an
unknown key refused by both), shown by GET whatever the version, and taken by the messages
sent with the template unless they name their own."""

from __future__ import annotations

import pytest

from accounts.categories import category_create
from messaging.models import Message
from templates_app.models import MessageTemplate
from tests.assertions import assert_error
from tests.conftest import subscription_create

from .conftest import template_create, template_payload
from .test_admin import ADD_URL, change_url, form_data

pytestmark = pytest.mark.django_db

URL = "/api/v1/templates"


@pytest.fixture
def categories(app):
    for key in ("offers", "news"):
        category_create(application=app.application, key=key, name=key.title())


def test_post_put_and_get_carry_the_category(app, server_api, categories):
    created = server_api.post(URL, template_payload(category="offers"), format="json")

    assert created.status_code == 201, created.content
    template_id = created.json()["id"]
    assert created.json()["category"] == "offers"
    changed = server_api.put(f"{URL}/{template_id}", {"category": "news"}, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["category"], changed.json()["version"]) == ("news", 2)
    # The category is the template's: every version shows the current one.
    assert server_api.get(f"{URL}/{template_id}", {"version": 1}).json()["category"] == "news"
    assert [t["category"] for t in server_api.get(URL).json()["results"]] == ["news"]
    # Other changes keep it; null removes it.
    kept = server_api.put(f"{URL}/{template_id}", {"body_template": "New"}, format="json")
    assert kept.json()["category"] == "news"
    removed = server_api.put(f"{URL}/{template_id}", {"category": None}, format="json")
    assert removed.json()["category"] is None
    assert MessageTemplate.objects.get().category == ""


def test_without_a_category_it_is_null(app, server_api):
    created = server_api.post(URL, template_payload(), format="json")

    assert created.json()["category"] is None


@pytest.mark.parametrize("category", ["ghost", "Offers", " offers", "", 5])
def test_an_unknown_or_malformed_category_is_400_on_category(
    app, server_api, other_app, categories, category
):
    category_create(application=other_app.application, key="ghost", name="Not ours")

    created = server_api.post(URL, template_payload(category=category), format="json")

    assert "category" in assert_error(created, 400, "validation_error")
    assert not MessageTemplate.objects.filter(application=app.application).exists()
    version = template_create(app.application, category="offers")
    changed = server_api.put(f"{URL}/{version.template_id}", {"category": category}, format="json")
    assert "category" in assert_error(changed, 400, "validation_error")
    assert MessageTemplate.objects.get(pk=version.template_id).category == "offers"


def test_a_message_takes_the_templates_category_unless_it_names_its_own(
    app, server_api, categories
):
    version = template_create(app.application, category="offers")
    subscription = subscription_create(app.application)
    body = {"subscription_id": str(subscription.pk), "template_id": str(version.template_id)}

    inherited = server_api.post("/api/v1/messages", body, format="json").json()
    own = server_api.post("/api/v1/messages", {**body, "category": "news"}, format="json").json()

    assert Message.objects.get(pk=inherited["messages"][0]["id"]).category == "offers"
    assert Message.objects.get(pk=own["messages"][0]["id"]).category == "news"


def test_the_admin_sets_and_checks_the_category(admin_client, app, categories):
    response = admin_client.post(
        ADD_URL, form_data(application=str(app.application.pk), category="offers")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    template = MessageTemplate.objects.get()
    assert template.category == "offers"
    refused = admin_client.post(change_url(template.pk), form_data(category="ghost"))
    assert refused.status_code == 200
    assert "No category 'ghost'" in " ".join(refused.context["adminform"].form.errors["category"])
    changed = admin_client.post(change_url(template.pk), form_data(category="news"))
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    cleared = admin_client.post(change_url(template.pk), form_data(category=""))
    assert cleared.status_code == 302
    template.refresh_from_db()
    assert (template.category, template.current.version) == ("", 3)
