"""The admin's categories: listed per application, added, changed and deleted through the same
services as the API (the same rules, audited as the operator)."""

from __future__ import annotations

import pytest

from accounts import audit
from accounts.categories import category_create
from accounts.models import AuditEntry, Category
from tests.admin_pages import page_data

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/category/"
ADMIN = "admin:root"


def rows(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def added(admin_client, app, **fields):
    data = {
        "application": str(app.application.pk),
        "key": "offers",
        "name": "Offers",
        "default_enabled": "on",
        "translations": '{"ko": "혜택", "pt_br": "Ofertas"}',
        **fields,
    }
    return admin_client.post(f"{CHANGELIST}add/", data)


def test_adding_a_category_is_audited_as_the_operator(admin_client, app):
    response = added(admin_client, app)

    assert response.status_code == 302, response.context["adminform"].form.errors
    category = Category.objects.get()
    assert (category.application_id, category.key, category.name) == (
        app.application.pk,
        "offers",
        "Offers",
    )
    assert (category.required, category.default_enabled) == (False, True)
    assert category.translations == {"ko": "혜택", "pt-BR": "Ofertas"}
    (entry,) = rows(audit.CATEGORY_CREATED)
    assert (entry.actor, entry.object_id, entry.application_id) == (
        ADMIN,
        "offers",
        app.application.pk,
    )


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"key": "Offers!"}, "key", "lower-case letters"),
        ({"name": "   "}, "name", "required"),
        ({"translations": '{"ko": ""}'}, "translations", "translations.ko"),
        ({"translations": '{"not a tag": "x"}'}, "translations", "not a language tag"),
        ({"translations": "[1]"}, "translations", "An object"),
    ],
)
def test_the_add_form_refuses_what_the_api_refuses(admin_client, app, fields, field, fragment):
    response = added(admin_client, app, **fields)

    assert response.status_code == 200
    form = response.context["adminform"].form
    messages = " ".join(str(m) for m in form.errors.get(field, []) + form.non_field_errors())
    assert fragment in messages, form.errors
    assert not Category.objects.exists()


def test_a_taken_key_is_a_form_error_in_the_apis_words(admin_client, app, other_app):
    category_create(application=app.application, key="offers", name="Offers")
    category_create(application=other_app.application, key="news", name="News")

    response = added(admin_client, app)
    elsewhere = added(admin_client, app, key="news")

    errors = response.context["adminform"].form.errors
    assert errors["key"] == ["The application already has a category with this key."]
    assert elsewhere.status_code == 302  # keys are per application
    assert Category.objects.filter(application=app.application).count() == 2


def test_changing_one_keeps_its_key_and_is_audited(admin_client, app):
    category = category_create(application=app.application, key="offers", name="Offers")
    url = f"{CHANGELIST}{category.pk}/change/"
    data = page_data(admin_client.get(url))
    data.update({"key": "changed", "name": "Deals", "required": "on"})

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    category.refresh_from_db()
    assert (category.key, category.name, category.required) == ("offers", "Deals", True)
    (entry,) = rows(audit.CATEGORY_CHANGED)
    assert entry.actor == ADMIN
    assert entry.details == {
        "key": "offers",
        "changes": {"name": ["Offers", "Deals"], "required": [False, True]},
    }
    # Saved as it stands: nothing changes, nothing is recorded.
    assert admin_client.post(url, page_data(admin_client.get(url))).status_code == 302
    assert len(rows(audit.CATEGORY_CHANGED)) == 1


def test_the_list_filters_by_application_and_deleting_is_audited(admin_client, app, other_app):
    ours = category_create(application=app.application, key="offers", name="Offers")
    category_create(application=other_app.application, key="news", name="News")

    listed = admin_client.get(CHANGELIST, {"application__id__exact": str(app.application.pk)})
    assert [c.key for c in listed.context["cl"].result_list] == ["offers"]
    page = admin_client.get(f"/admin/accounts/application/{app.application.pk}/change/")
    assert "1 category" in page.content.decode()

    response = admin_client.post(f"{CHANGELIST}{ours.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert list(Category.objects.values_list("key", flat=True)) == ["news"]
    (entry,) = rows(audit.CATEGORY_DELETED)
    assert (entry.actor, entry.details) == (ADMIN, {"key": "offers", "name": "Offers"})


def test_deleting_several_from_the_list_audits_each(admin_client, app):
    keys = ["a", "b"]
    categories = [category_create(application=app.application, key=k, name=k) for k in keys]

    admin_client.post(
        CHANGELIST,
        {
            "action": "delete_selected",
            "_selected_action": [str(c.pk) for c in categories],
            "post": "yes",
        },
    )

    assert not Category.objects.exists()
    assert sorted(e.object_id for e in rows(audit.CATEGORY_DELETED)) == keys
