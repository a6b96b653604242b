"""The application's frequency cap: set, shown and removed by `PUT/GET /applications/current`
and by the application's admin page, checked alike by both, audited as the other settings."""

from __future__ import annotations

import pytest

from accounts import audit
from accounts.models import Application, AuditEntry
from tests.admin_pages import page_data
from tests.assertions import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/applications/current"
CAP = {"max": 3, "per_seconds": 86400}


def stored_cap(app):
    return Application.objects.get(pk=app.application.pk).frequency_cap


def test_none_by_default_and_shown_to_both_keys(server_api, client_api):
    assert server_api.get(URL).json()["frequency_cap"] is None
    assert client_api.get(URL).json()["frequency_cap"] is None


def test_put_sets_it_null_removes_it_and_each_change_is_audited(app, server_api, client_api):
    response = server_api.put(URL, {"frequency_cap": CAP}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["frequency_cap"] == CAP
    assert client_api.get(URL).json()["frequency_cap"] == CAP
    assert stored_cap(app) == CAP

    assert server_api.put(URL, {"retention_days": 30}, format="json").json()["frequency_cap"] == CAP
    removed = server_api.put(URL, {"frequency_cap": None}, format="json")

    assert removed.status_code == 200 and removed.json()["frequency_cap"] is None
    assert stored_cap(app) is None
    changes = [
        entry.details["changes"]
        for entry in AuditEntry.objects.filter(action=audit.SETTINGS_CHANGED).order_by("id")
    ]
    assert changes == [
        {"frequency_cap": [None, CAP]},
        {"retention_days": [90, 30]},
        {"frequency_cap": [CAP, None]},
    ]


def test_the_same_cap_again_records_nothing(app, server_api):
    server_api.put(URL, {"frequency_cap": CAP}, format="json")
    server_api.put(URL, {"frequency_cap": dict(CAP)}, format="json")

    assert AuditEntry.objects.filter(action=audit.SETTINGS_CHANGED).count() == 1


@pytest.mark.parametrize(
    "cap",
    [
        {"max": 0, "per_seconds": 60},
        {"max": 3},
        {"per_seconds": 60},
        {"max": 3, "per_seconds": 0},
        {"max": 3, "per_seconds": 31 * 86400 + 1},
        {"max": 10_001, "per_seconds": 60},
        {"max": "3", "per_seconds": 60},
        {"max": True, "per_seconds": 60},
        {"max": 1.5, "per_seconds": 60},
        {"max": 3, "per_seconds": 60, "scope": "user"},
        [3, 60],
        3,
    ],
)
def test_bad_caps_are_400_and_change_nothing(app, server_api, cap):
    details = assert_error(
        server_api.put(URL, {"frequency_cap": cap}, format="json"), 400, "validation_error"
    )

    assert list(details) == ["frequency_cap"]
    assert stored_cap(app) is None
    assert not AuditEntry.objects.filter(action=audit.SETTINGS_CHANGED).exists()


def test_the_widest_cap_is_taken(app, server_api):
    widest = {"max": 10_000, "per_seconds": 31 * 86400}

    assert server_api.put(URL, {"frequency_cap": widest}, format="json").status_code == 200
    assert stored_cap(app) == widest


def test_a_client_key_may_not_set_it(app, client_api):
    assert_error(
        client_api.put(URL, {"frequency_cap": CAP}, format="json"), 403, "permission_denied"
    )
    assert stored_cap(app) is None


# --- The admin's application page --------------------------------------------------------------


def change_url(application) -> str:
    return f"/admin/accounts/application/{application.pk}/change/"


def test_the_admin_shows_and_sets_it_audited_as_a_field_of_the_form(admin_client, app):
    url = change_url(app.application)
    data = page_data(admin_client.get(url))
    assert data["frequency_cap"] == "null"
    data["frequency_cap"] = '{"max": 2, "per_seconds": 3600}'

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert stored_cap(app) == {"max": 2, "per_seconds": 3600}
    (entry,) = AuditEntry.objects.filter(action=audit.APPLICATION_CHANGED)
    assert entry.details == {"fields": ["frequency_cap"]} and entry.actor == "admin:root"
    page = admin_client.get(url).content.decode()
    assert "&quot;per_seconds&quot;: 3600" in page
    # Emptied, the cap is removed.
    data = page_data(admin_client.get(url))
    data["frequency_cap"] = ""
    assert admin_client.post(url, data).status_code == 302
    assert stored_cap(app) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('{"max": 0, "per_seconds": 60}', '"max" is a whole number from 1 to 10000'),
        ('{"max": 3}', '"per_seconds" is a whole number'),
        ('{"max": 3, "per_seconds": 60, "x": 1}', "Unknown field"),
        ("[3, 60]", "or null"),
        ("{not json", "Enter a valid JSON"),
    ],
)
def test_the_admin_refuses_bad_caps_as_the_api_does(admin_client, app, value, fragment):
    url = change_url(app.application)
    data = page_data(admin_client.get(url))
    data["frequency_cap"] = value

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert fragment in " ".join(errors.get("frequency_cap", [])), errors
    assert stored_cap(app) is None


def test_an_application_added_in_the_admin_keeps_its_cap(admin_client, db):
    data = page_data(admin_client.get("/admin/accounts/application/add/"))
    data.update(
        {
            "name": "capped",
            "settings": "{}",
            "retention_days": "90",
            "frequency_cap": '{"max": 5, "per_seconds": 60}',
        }
    )

    response = admin_client.post("/admin/accounts/application/add/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Application.objects.get(name="capped").frequency_cap == {"max": 5, "per_seconds": 60}
