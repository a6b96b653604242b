"""The admin's changes leave one audit row each, with "admin:<username>" as the actor: the
application form (field names only), its retention and allowed origins, keys created and
revoked, identity secrets rotated, and credentials uploaded or removed (field names, never
values)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import audit
from accounts.models import Application, AuditEntry, ChannelCredential
from accounts.services import channel_credentials_set, identity_verification_set
from tests.admin_pages import p8_key, page_data

pytestmark = pytest.mark.django_db

ADMIN = "admin:root"
CHANGELIST = "/admin/accounts/application/"
SMS = {"account_sid": "AC" + "1" * 32, "auth_token": "tokenSecret77", "from": "+15005550006"}


def change_url(application) -> str:
    return f"{CHANGELIST}{application.pk}/change/"


def rows(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def test_changes_on_the_application_page_are_one_row_naming_the_fields(admin_client, app):
    url = change_url(app.application)
    data = page_data(admin_client.get(url))
    assert data["retention_days"] == 90 and data["allowed_origins"] == ""
    data.update(
        {
            "name": "renamed",
            "retention_days": "30",
            "allowed_origins": "HTTPS://Shop.Example.com/\n\nhttp://127.0.0.1:8080\n"
            "https://shop.example.com",
        }
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    application = Application.objects.get(pk=app.application.pk)
    assert (application.name, application.retention_days) == ("renamed", 30)
    assert application.allowed_origins == ["https://shop.example.com", "http://127.0.0.1:8080"]
    (entry,) = rows(audit.APPLICATION_CHANGED)
    assert (entry.actor, entry.object_id) == (ADMIN, str(application.pk))
    assert entry.application_id == application.pk
    assert entry.details == {"fields": ["name", "retention_days", "allowed_origins"]}
    # The page shows the origins one per line.
    assert (
        "https://shop.example.com\nhttp://127.0.0.1:8080" in admin_client.get(url).content.decode()
    )


def test_saving_the_page_unchanged_records_nothing(admin_client, app):
    application = Application.objects.get(pk=app.application.pk)
    application.allowed_origins = ["https://a.example"]
    application.save(update_fields=["allowed_origins"])
    url = change_url(application)

    response = admin_client.post(url, page_data(admin_client.get(url)))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert not rows(audit.APPLICATION_CHANGED)
    assert Application.objects.get(pk=application.pk).allowed_origins == ["https://a.example"]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("allowed_origins", "https://ok.example\nftp://files.example", "is not an origin"),
        ("allowed_origins", "https://shop.example.com/path", "no path"),
        ("allowed_origins", "\n".join(f"https://{n}.example" for n in range(101)), "At most 100"),
        ("retention_days", "0", "greater than or equal to 1"),
        ("retention_days", "3651", "less than or equal to 3650"),
    ],
)
def test_invalid_retention_or_origins_are_form_errors(admin_client, app, field, value, fragment):
    url = change_url(app.application)
    data = page_data(admin_client.get(url))
    data[field] = value

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert fragment in " ".join(errors.get(field, [])), errors
    stored = Application.objects.get(pk=app.application.pk)
    assert (stored.retention_days, stored.allowed_origins) == (90, [])
    assert not rows(audit.APPLICATION_CHANGED)


def test_identity_verification_on_the_page_is_audited_without_the_secret(admin_client, app):
    url = change_url(app.application)
    data = page_data(admin_client.get(url))
    data["identity_verification"] = "on"

    admin_client.post(url, data)

    (entry,) = rows(audit.APPLICATION_CHANGED)
    assert entry.details == {"fields": ["identity_verification"]} and entry.actor == ADMIN
    secret = Application.objects.get(pk=app.application.pk).identity_secret
    assert secret and secret not in json.dumps(entry.details)


def test_adding_an_application_is_audited(admin_client, db):
    data = page_data(admin_client.get(f"{CHANGELIST}add/"))
    data.update(
        {
            "name": "added",
            "settings": "{}",
            "retention_days": "14",
            "allowed_origins": "https://web.example",
            "apns_key_file": SimpleUploadedFile("AuthKey.p8", p8_key().encode()),
            "apns_key_id": "KEY1234567",
            "apns_team_id": "TEAM123456",
            "apns_topic": "com.example.new",
        }
    )

    response = admin_client.post(f"{CHANGELIST}add/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    application = Application.objects.get(name="added")
    assert (application.retention_days, application.allowed_origins) == (
        14,
        ["https://web.example"],
    )
    (created,) = rows(audit.APPLICATION_CREATED)
    assert (created.actor, created.object_id) == (ADMIN, str(application.pk))
    assert created.details == {"name": "added", "channels": ["iOSPush"]}
    (credentials,) = rows(audit.CREDENTIALS_CHANGED)
    assert credentials.actor == ADMIN and credentials.details["channel"] == "iOSPush"
    assert "private_key" in credentials.details["fields"]
    assert "BEGIN" not in json.dumps(credentials.details)


def test_uploading_and_removing_push_credentials_on_the_page(admin_client, app):
    url = change_url(app.application)
    data = page_data(admin_client.get(url))
    data.update(
        {
            "apns_key_file": SimpleUploadedFile("AuthKey.p8", p8_key().encode()),
            "apns_key_id": "KEY1234567",
            "apns_team_id": "TEAM123456",
            "apns_topic": "com.example.app",
        }
    )
    assert admin_client.post(url, data).status_code == 302
    data = page_data(admin_client.get(url))
    data["apns_clear"] = "on"
    assert admin_client.post(url, data).status_code == 302

    (changed,) = rows(audit.CREDENTIALS_CHANGED)
    (removed,) = rows(audit.CREDENTIALS_REMOVED)
    assert (changed.actor, removed.actor) == (ADMIN, ADMIN)
    assert changed.details["fields"] == sorted(changed.details["fields"])
    assert {"key_id", "team_id", "topic", "private_key"} <= set(changed.details["fields"])
    assert "KEY1234567" not in json.dumps(changed.details)
    assert removed.details == {"channel": "iOSPush"} and removed.object_id == "iOSPush"
    assert not rows(audit.APPLICATION_CHANGED)  # credentials are their own rows


def test_key_actions_are_audited(admin_client, app):
    admin_client.post(
        CHANGELIST,
        {"action": "create_server_key", "_selected_action": [str(app.application.pk)]},
    )
    admin_client.post(
        "/admin/accounts/apikey/",
        {
            "action": "revoke",
            "_selected_action": [str(app.server.api_key.pk), str(app.client.api_key.pk)],
            "confirm": "yes",
        },
    )

    created = [e for e in rows(audit.API_KEY_CREATED) if e.actor == ADMIN]
    assert len(created) == 1 and created[0].details["scope"] == "server"
    revoked = rows(audit.API_KEY_REVOKED)
    assert [e.actor for e in revoked] == [ADMIN, ADMIN]
    assert {e.object_id for e in revoked} == {
        str(app.server.api_key.pk),
        str(app.client.api_key.pk),
    }


def test_rotating_the_identity_secret_is_audited_without_it(admin_client, app):
    identity_verification_set(application=app.application, enabled=True)

    admin_client.post(
        CHANGELIST,
        {
            "action": "rotate_identity_secret",
            "_selected_action": [str(app.application.pk)],
            "confirm": "yes",
        },
    )

    (entry,) = rows(audit.IDENTITY_SECRET_ROTATED)
    application = Application.objects.get(pk=app.application.pk)
    assert (entry.actor, entry.object_id) == (ADMIN, str(application.pk))
    text = json.dumps(entry.details)
    assert application.identity_secret not in text
    assert application.identity_secret_previous not in text


def test_the_credentials_page_audits_uploads_and_deletes(admin_client, app):
    add = admin_client.post(
        "/admin/accounts/channelcredential/add/",
        {
            "application": str(app.application.pk),
            "channel": "SMS",
            "credentials_file": SimpleUploadedFile("sms.json", json.dumps(SMS).encode()),
            "test_recipient": "",
        },
    )
    assert add.status_code == 302, add.context["adminform"].form.errors
    row = ChannelCredential.objects.get(application=app.application, channel="SMS")

    deleted = admin_client.post(
        f"/admin/accounts/channelcredential/{row.pk}/delete/", {"post": "yes"}
    )

    assert deleted.status_code == 302
    assert not ChannelCredential.objects.filter(pk=row.pk).exists()
    (changed,) = rows(audit.CREDENTIALS_CHANGED)
    (removed,) = rows(audit.CREDENTIALS_REMOVED)
    assert changed.actor == removed.actor == ADMIN
    assert changed.details == {"channel": "SMS", "fields": ["account_sid", "auth_token", "from"]}
    assert "tokenSecret77" not in json.dumps(changed.details)


def test_the_credentials_changelists_bulk_delete_audits_each(admin_client, app):
    channel_credentials_set(application=app.application, channel="SMS", values=SMS)
    row = ChannelCredential.objects.get(application=app.application, channel="SMS")

    admin_client.post(
        "/admin/accounts/channelcredential/",
        {"action": "delete_selected", "_selected_action": [str(row.pk)], "post": "yes"},
    )

    assert not ChannelCredential.objects.filter(pk=row.pk).exists()
    assert [(e.actor, e.object_id) for e in rows(audit.CREDENTIALS_REMOVED)] == [(ADMIN, "SMS")]
