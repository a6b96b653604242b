"""/api-keys: list, create (the key shown once) and revoke the calling application's keys;
revocation takes effect on the very next request, and each change is in the audit log."""

from __future__ import annotations

import json
import uuid

import pytest

from accounts.models import ApiKey, AuditEntry
from accounts.selectors import api_key_digest
from tests.assertions import assert_error
from tests.conftest import api_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/api-keys"
PROBE = "/api/v1/applications/current"  # open to both scopes


def test_the_list_shows_the_applications_keys_and_never_a_key_or_digest(app, other_app, server_api):
    response = server_api.get(URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"results", "next"}
    ids = [row["id"] for row in body["results"]]
    assert ids == [str(app.client.api_key.pk), str(app.server.api_key.pk)]  # newest first
    for row in body["results"]:
        assert set(row) == {
            "id", "scope", "name", "prefix", "created_at", "last_used_at", "revoked_at"
        }  # fmt: skip
    server_row = body["results"][1]
    assert server_row["scope"] == "server"
    assert server_row["prefix"] == app.server.raw[:11]
    assert server_row["last_used_at"] is not None  # this very request used it
    text = response.content.decode()
    for secret in (app.server.raw, app.client.raw, app.server.api_key.digest):
        assert secret not in text
    assert str(other_app.server.api_key.pk) not in text


def test_the_list_filters_by_active(app, server_api):
    revoked = server_api.post(URL, {"scope": "client", "name": "old"}, format="json").json()
    assert server_api.delete(f"{URL}/{revoked['id']}").status_code == 204

    active = [row["id"] for row in server_api.get(URL, {"active": "true"}).json()["results"]]
    inactive = [row["id"] for row in server_api.get(URL, {"active": "false"}).json()["results"]]

    assert revoked["id"] not in active and len(active) == 2
    assert inactive == [revoked["id"]]
    assert_error(server_api.get(URL, {"active": "maybe"}), 400, "validation_error")
    assert_error(server_api.get(URL, {"colour": "red"}), 400, "validation_error")


def test_the_list_pages(app, server_api):
    first = server_api.get(URL, {"limit": 1}).json()
    second = server_api.get(first["next"]).json()

    assert [r["id"] for r in first["results"] + second["results"]] == [
        str(app.client.api_key.pk),
        str(app.server.api_key.pk),
    ]
    assert second["next"] is None


@pytest.mark.parametrize("scope", ["server", "client"])
def test_create_shows_the_key_once_and_it_works(app, server_api, scope):
    response = server_api.post(URL, {"scope": scope, "name": "backend"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "scope", "name", "prefix", "key"}
    assert (body["scope"], body["name"]) == (scope, "backend")
    assert body["key"].startswith("sk_" if scope == "server" else "ck_")
    assert body["prefix"] == body["key"][:11]
    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.application_id == app.application.pk
    assert stored.digest == api_key_digest(body["key"])
    assert api_client(body["key"]).get(PROBE).status_code == 200
    # Never shown again.
    assert body["key"] not in server_api.get(URL).content.decode()


def test_create_is_audited_with_the_acting_key_and_without_the_key(app, server_api):
    body = server_api.post(URL, {"scope": "client", "name": "ios"}, format="json").json()

    (entry,) = AuditEntry.objects.filter(action="api_key.created", object_id=body["id"])
    assert entry.application_id == app.application.pk
    assert entry.actor == f"api_key:{app.server.api_key.prefix}"
    assert entry.api_key_id == app.server.api_key.pk
    assert entry.object_type == "api_key"
    assert entry.details == {"name": "ios", "scope": "client", "prefix": body["prefix"]}
    stored = json.dumps(entry.details)
    assert body["key"] not in stored
    assert ApiKey.objects.get(pk=body["id"]).digest not in stored


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"scope": "admin"},
        {"scope": "server", "name": "x" * 101},
        {"scope": "server", "name": 5},
        {"scope": "server", "key": "sk_chosen"},
        {"scope": "server", "name": "nul\x00"},
    ],
)
def test_create_refuses_invalid_bodies(app, server_api, body):
    assert_error(server_api.post(URL, body, format="json"), 400, "validation_error")
    assert ApiKey.objects.filter(application=app.application).count() == 2


def test_the_name_is_optional(server_api):
    response = server_api.post(URL, {"scope": "server"}, format="json")

    assert response.status_code == 201
    assert response.json()["name"] == ""


def test_revoke_takes_effect_on_the_next_request(app, server_api):
    client = api_client(app.client.raw)
    assert client.get(PROBE).status_code == 200

    response = server_api.delete(f"{URL}/{app.client.api_key.pk}")

    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get(PROBE), 401, "authentication_failed")
    app.client.api_key.refresh_from_db()
    assert app.client.api_key.revoked_at is not None
    (entry,) = AuditEntry.objects.filter(action="api_key.revoked")
    assert entry.actor == f"api_key:{app.server.api_key.prefix}"
    assert entry.object_id == str(app.client.api_key.pk)
    assert entry.details == {
        "name": "client",
        "scope": "client",
        "prefix": app.client.api_key.prefix,
    }


def test_a_key_may_revoke_itself_and_is_refused_at_once(app, server_api):
    response = server_api.delete(f"{URL}/{app.server.api_key.pk}")

    assert response.status_code == 204
    assert_error(server_api.get(URL), 401, "authentication_failed")
    (entry,) = AuditEntry.objects.filter(action="api_key.revoked")
    assert entry.actor == f"api_key:{app.server.api_key.prefix}"
    assert entry.api_key_id == app.server.api_key.pk
    assert entry.object_id == str(app.server.api_key.pk)


def test_revoking_a_revoked_key_changes_nothing(app, server_api):
    target = f"{URL}/{app.client.api_key.pk}"
    assert server_api.delete(target).status_code == 204
    revoked_at = ApiKey.objects.get(pk=app.client.api_key.pk).revoked_at

    assert server_api.delete(target).status_code == 204

    assert ApiKey.objects.get(pk=app.client.api_key.pk).revoked_at == revoked_at
    assert AuditEntry.objects.filter(action="api_key.revoked").count() == 1


def test_another_applications_key_is_not_found(app, other_app, server_api):
    assert_error(server_api.delete(f"{URL}/{other_app.server.api_key.pk}"), 404, "not_found")
    assert_error(server_api.delete(f"{URL}/{uuid.uuid4()}"), 404, "not_found")

    assert api_client(other_app.server.raw).get(URL).status_code == 200
    assert not AuditEntry.objects.filter(action="api_key.revoked").exists()


def test_client_keys_may_not_manage_keys(app, client_api):
    assert_error(client_api.get(URL), 403, "permission_denied")
    assert_error(client_api.post(URL, {"scope": "server"}, format="json"), 403, "permission_denied")
    assert_error(client_api.delete(f"{URL}/{app.client.api_key.pk}"), 403, "permission_denied")
    assert ApiKey.objects.filter(application=app.application, revoked_at=None).count() == 2


def test_without_a_key_it_is_401(anonymous_api, app):
    assert_error(anonymous_api.get(URL), 401, "authentication_failed")
    assert_error(
        anonymous_api.delete(f"{URL}/{app.server.api_key.pk}"), 401, "authentication_failed"
    )
