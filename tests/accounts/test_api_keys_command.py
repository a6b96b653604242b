"""`api_keys list|create|revoke` and `create_application`: keys printed once, never listed,
every change in the audit log with the system as its actor; `set_channel_credentials` audits
field names, never values."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import audit
from accounts.models import ApiKey, Application, AuditEntry
from tests.conftest import api_client

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, object]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    text = out.getvalue()
    return text, json.loads(text.strip().splitlines()[-1])


def test_create_prints_the_key_once_and_audits_it(app):
    text, created = run(
        "api_keys", "create", "--application", str(app.application.pk), "--scope", "server",
        "--name", "deploy-2027",
    )  # fmt: skip

    assert set(created) == {"id", "scope", "name", "prefix", "key"}
    assert created["key"].startswith("sk_") and created["prefix"] == created["key"][:11]
    assert api_client(created["key"]).get("/api/v1/api-keys").status_code == 200
    (entry,) = AuditEntry.objects.filter(action=audit.API_KEY_CREATED, object_id=created["id"])
    assert entry.actor == audit.SYSTEM and entry.application_id == app.application.pk
    assert created["key"] not in json.dumps(entry.details)

    _, listed = run("api_keys", "list", "--application", str(app.application.pk))
    assert [row["id"] for row in listed][0] == created["id"]
    assert created["key"] not in json.dumps(listed)
    assert {"digest", "key"}.isdisjoint(listed[0])


def test_revoke_takes_effect_at_once_and_is_audited(app):
    server = api_client(app.server.raw)
    assert server.get("/api/v1/api-keys").status_code == 200

    _, revoked = run(
        "api_keys", "revoke", "--application", str(app.application.pk),
        "--key", str(app.server.api_key.pk),
    )  # fmt: skip

    assert revoked["revoked_at"] is not None and revoked["was_active"] is True
    assert server.get("/api/v1/api-keys").status_code == 401
    (entry,) = AuditEntry.objects.filter(action=audit.API_KEY_REVOKED)
    assert (entry.actor, entry.object_id) == (audit.SYSTEM, str(app.server.api_key.pk))
    _, active = run(
        "api_keys", "list", "--application", str(app.application.pk), "--active", "true"
    )
    assert [row["id"] for row in active] == [str(app.client.api_key.pk)]


def test_a_key_of_another_application_or_none_is_refused(app, other_app):
    for application, key in (
        (app.application.pk, other_app.server.api_key.pk),
        (app.application.pk, uuid.uuid4()),
        (app.application.pk, "not-a-uuid"),
        (uuid.uuid4(), app.server.api_key.pk),
    ):
        with pytest.raises(CommandError, match="No "):
            call_command("api_keys", "revoke", "--application", str(application), "--key", str(key))
    assert not ApiKey.objects.exclude(revoked_at=None).exists()
    assert not AuditEntry.objects.filter(action=audit.API_KEY_REVOKED).exists()


def test_create_application_audits_the_application_and_both_keys(db):
    _, made = run("create_application", "--name", "cli app")

    rows = AuditEntry.objects.filter(application_id=made["id"]).order_by("id")
    assert [(row.action, row.actor) for row in rows] == [
        (audit.APPLICATION_CREATED, audit.SYSTEM),
        (audit.API_KEY_CREATED, audit.SYSTEM),
        (audit.API_KEY_CREATED, audit.SYSTEM),
    ]
    assert rows[0].details == {"name": "cli app", "channels": []}
    assert [row.details["scope"] for row in rows[1:]] == ["server", "client"]
    text = json.dumps([row.details for row in rows])
    assert made["server_key"] not in text and made["client_key"] not in text
    assert Application.objects.filter(pk=made["id"]).exists()


def test_set_channel_credentials_audits_the_changed_field_names_only(app, tmp_path):
    values = {"account_sid": "AC" + "1" * 32, "auth_token": "tokenSecret77", "from": "+15005550006"}
    path = tmp_path / "sms.json"
    path.write_text(json.dumps(values))
    args = ("set_channel_credentials", "--application", str(app.application.pk),
            "--channel", "SMS", "--file", str(path))  # fmt: skip
    run(*args)
    path.write_text(json.dumps({**values, "auth_token": "otherSecret88"}))
    run(*args)

    first, second = AuditEntry.objects.filter(action=audit.CREDENTIALS_CHANGED).order_by("id")
    assert first.actor == audit.SYSTEM and first.object_id == "SMS"
    assert first.details == {"channel": "SMS", "fields": ["account_sid", "auth_token", "from"]}
    assert second.details == {"channel": "SMS", "fields": ["auth_token"]}
    text = json.dumps([first.details, second.details])
    assert "Secret" not in text and "+1500" not in text
