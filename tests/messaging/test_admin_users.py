"""The "App users" admin: tags on the page, and its Erase and Export actions through the same
services as the API, audited as the operator."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages

from accounts import audit
from accounts.models import AuditEntry
from messaging.models import Message, Subscription, User
from messaging.services.users import user_tags_update

from .test_api_user_data import person, rows_of

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/messaging/user/"


def action(client, name: str, users, **extra):
    return client.post(
        CHANGELIST,
        {"action": name, "_selected_action": [str(u.pk) for u in users], **extra},
    )


def test_the_user_page_shows_its_tags(admin_client, app):
    user_tags_update(
        application=app.application, external_user_id="kim", tags={"tier": "vip", "city": "서울"}
    )
    user = User.objects.get()

    page = admin_client.get(f"{CHANGELIST}{user.pk}/change/").content.decode()
    listed = admin_client.get(CHANGELIST).content.decode()

    assert 'id="user-tags"' in page and "&quot;tier&quot;: &quot;vip&quot;" in page
    assert "서울" in page
    assert "tier=vip" in listed


def test_erase_asks_with_the_counts_then_erases_and_audits_the_operator(admin_client, app):
    alice, subscriptions = person(app.application)
    bruno, others = person(app.application, "bruno")
    before = rows_of(subscriptions)

    page = action(admin_client, "erase", [alice])

    assert page.status_code == 200
    html = page.content.decode()
    assert f"{before['subscriptions']} subscription(s)" in html
    assert f"{before['messages']} message(s) with their {before['message_events']} event(s)" in html
    assert f"{before['inbox_items']} inbox item(s)" in html
    assert User.objects.filter(pk=alice.pk).exists()  # nothing yet

    done = action(admin_client, "erase", [alice], confirm="yes")

    assert done.status_code == 302
    assert [str(m) for m in get_messages(done.wsgi_request)] == ["Erased 1 user(s)."]
    assert not User.objects.filter(pk=alice.pk).exists()
    assert set(rows_of(subscriptions).values()) == {0}
    assert User.objects.filter(pk=bruno.pk).exists() and rows_of(others)["messages"] == 4
    entry = AuditEntry.objects.get(action=audit.USER_ERASED)
    assert (entry.actor, entry.object_id) == ("admin:root", str(alice.pk))
    assert entry.details["messages"] == before["messages"]


def test_the_admin_offers_no_row_by_row_delete(admin_client, app):
    alice, _ = person(app.application)

    assert admin_client.get(f"{CHANGELIST}{alice.pk}/delete/").status_code == 403
    assert "delete_selected" not in admin_client.get(CHANGELIST).content.decode()


def test_export_asks_then_downloads_the_users_document_and_audits_it(admin_client, app):
    alice, subscriptions = person(app.application)
    page = action(admin_client, "export", [alice])
    assert page.status_code == 200 and not page.streaming
    assert "device tokens" in page.content.decode()
    assert not AuditEntry.objects.filter(action=audit.USER_EXPORTED).exists()

    response = action(admin_client, "export", [alice], confirm="yes")

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="user-{alice.pk}.json"'
    document = json.loads(b"".join(response.streaming_content))
    assert document["user"]["external_user_id"] == "alice"
    assert {s["id"] for s in document["subscriptions"]} == {str(s.pk) for s in subscriptions}
    assert (
        len(document["messages"])
        == Message.objects.filter(subscription__in=Subscription.objects.filter(user=alice)).count()
    )
    entry = AuditEntry.objects.get(action=audit.USER_EXPORTED)
    assert (entry.actor, entry.object_id) == ("admin:root", str(alice.pk))


def test_export_takes_one_user(admin_client, app):
    alice, _ = person(app.application)
    bruno, _ = person(app.application, "bruno")

    response = action(admin_client, "export", [alice, bruno])

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Choose exactly one user to export."
    ]
    assert not AuditEntry.objects.filter(action=audit.USER_EXPORTED).exists()
