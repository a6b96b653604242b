"""PUT /applications/current with retention_days and allowed_origins, and the audit row each
change leaves; the audit log refuses to be changed."""

from __future__ import annotations

import re

import pytest
from django.db import DatabaseError, transaction

from accounts.models import Application, AuditEntry

URL = "/api/v1/applications/current"

pytestmark = pytest.mark.django_db


def test_defaults_are_shown(server_api, client_api):
    for api in (server_api, client_api):
        body = api.get(URL).json()
        assert body["retention_days"] == 90
        assert body["allowed_origins"] == []


def test_put_sets_retention_and_origins_and_audits_the_change(app, server_api):
    response = server_api.put(
        URL,
        {
            "retention_days": 30,
            "allowed_origins": ["HTTPS://Shop.Example.com/", "http://127.0.0.1:8080"],
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["retention_days"] == 30
    assert response.json()["allowed_origins"] == [
        "https://shop.example.com",
        "http://127.0.0.1:8080",
    ]
    stored = Application.objects.get(pk=app.application.pk)
    assert (stored.retention_days, stored.allowed_origins) == (
        30,
        ["https://shop.example.com", "http://127.0.0.1:8080"],
    )
    (entry,) = AuditEntry.objects.filter(application=app.application, action="settings.changed")
    assert entry.action == "settings.changed"
    assert entry.actor == f"api_key:{app.server.api_key.prefix}"
    assert entry.api_key_id == app.server.api_key.pk
    assert (entry.object_type, entry.object_id) == ("application", str(app.application.pk))
    assert entry.details["changes"]["retention_days"] == [90, 30]


def test_an_unchanged_value_leaves_no_audit_row(app, server_api):
    assert server_api.put(URL, {"retention_days": 90}, format="json").status_code == 200
    assert not AuditEntry.objects.filter(
        application=app.application, action="settings.changed"
    ).exists()


def test_identity_verification_change_is_audited_without_the_secret(app, server_api):
    response = server_api.put(URL, {"identity_verification": True}, format="json")
    secret = response.json()["identity_secret"]

    (entry,) = AuditEntry.objects.filter(application=app.application, action="settings.changed")
    assert entry.details == {"changes": {"identity_verification": [False, True]}}
    assert secret not in str(entry.details)


@pytest.mark.parametrize(
    "body",
    [
        {"retention_days": 0},
        {"retention_days": 3651},
        {"retention_days": "30 days"},
        {"allowed_origins": "https://a.example"},
        {"allowed_origins": ["a.example"]},
        {"allowed_origins": ["https://a.example/path"]},
        {"allowed_origins": ["ftp://a.example"]},
        {"allowed_origins": ["https://user@a.example"]},
    ],
)
def test_bad_values_are_400_and_change_nothing(app, server_api, body):
    response = server_api.put(URL, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert set(response.json()["error"]["details"]) == set(body)
    stored = Application.objects.get(pk=app.application.pk)
    assert (stored.retention_days, stored.allowed_origins) == (90, [])
    assert not AuditEntry.objects.filter(action="settings.changed").exists()


def test_the_audit_log_refuses_update_and_delete(app, server_api):
    server_api.put(URL, {"retention_days": 7}, format="json")
    entry = AuditEntry.objects.get(application=app.application, action="settings.changed")

    for change in (
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(action="api_key.created"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()
    assert AuditEntry.objects.get(pk=entry.pk).action == "settings.changed"


ORIGIN_SAMPLES = [
    "https://shop.example.com", "HTTP://Shop.Example.com/", "http://127.0.0.1:8080",
    "https://a-b.example:65535", "http://a:0", "http://a:65536", "http://a:080", "http://a?",
    "http://a#x", "https://a.example/path", "https://user@a.example", "http://[::1]:8080",
    " https://a.example", "https://a.example ", "https://-a.example", "ftp://a.example", "https://",
]  # fmt: skip


def test_the_documents_origin_pattern_is_the_rule_the_api_applies(server_api):
    """What the OpenAPI document calls a valid origin is accepted, and nothing else (the API
    is fuzzed against the document)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    body = schema["components"]["schemas"]["ApplicationUpdateInputRequest"]
    pattern = body["properties"]["allowed_origins"]["items"]["pattern"]
    for origin in ORIGIN_SAMPLES:
        response = server_api.put(URL, {"allowed_origins": [origin]}, format="json")
        valid = re.search(pattern, origin) is not None
        assert response.status_code == (200 if valid else 400), (origin, response.content)
