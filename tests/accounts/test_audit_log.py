"""GET /audit-log: the calling application's rows only, newest first, filtered and paged;
and the admin's read-only list of all rows."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone

from accounts import audit
from accounts.models import AuditEntry
from tests.assertions import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit-log"


@pytest.fixture
def rows(app, other_app):
    """Three rows of `app` an hour apart (oldest first) and one of `other_app`, made after
    the fixtures' own rows (application and key creation)."""
    now = timezone.now()
    made = []
    for hours, action in ((3, audit.SETTINGS_CHANGED), (2, audit.CAMPAIGN_EXECUTED),
                          (1, audit.SETTINGS_CHANGED)):  # fmt: skip
        made.append(
            AuditEntry.objects.create(
                application=app.application,
                at=now - timedelta(hours=hours),
                actor="admin:root",
                action=action,
                object_type="campaign" if action == audit.CAMPAIGN_EXECUTED else "application",
                object_id=f"obj-{hours}",
                details={"n": hours},
            )
        )
    AuditEntry.objects.create(
        application=other_app.application,
        at=now - timedelta(minutes=30),
        actor="admin:root",
        action=audit.SETTINGS_CHANGED,
        object_type="application",
        object_id="theirs",
    )
    return made


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_newest_first_and_only_the_callers_rows(app, other_app, server_api, rows):
    response = server_api.get(URL)

    body = response.json()
    assert set(body) == {"results", "next"} and body["next"] is None
    listed = body["results"]
    # The fixtures' rows (application and its two keys created) are the newest.
    assert [row["action"] for row in listed[:3]] == ["api_key.created"] * 2 + [
        "application.created"
    ]
    assert [row["object_id"] for row in listed[3:]] == ["obj-1", "obj-2", "obj-3"]
    assert "theirs" not in response.content.decode()
    assert str(other_app.application.pk) not in response.content.decode()
    row = listed[3]
    assert set(row) == {"at", "actor", "action", "object_type", "object_id", "details"}
    assert row["actor"] == "admin:root" and row["details"] == {"n": 1}
    assert row["at"].endswith("Z") or row["at"][-6] in "+-"


def test_filters(app, server_api, rows):
    def ids(**query):
        return [row["object_id"] for row in results(server_api.get(URL, query))]

    assert ids(action="campaign.executed") == ["obj-2"]
    assert ids(object_type="campaign") == ["obj-2"]
    assert ids(object_id="obj-3") == ["obj-3"]
    assert ids(object_id="theirs") == []
    since = rows[1].at.isoformat()
    until = rows[0].at.isoformat()
    assert ids(object_type="application", since=since)[-1] == "obj-1"
    assert ids(until=since) == ["obj-3"]  # `until` excludes its moment
    assert ids(since=until, until=since) == ["obj-3"]
    assert ids(action="settings.changed", since=rows[0].at.isoformat()) == ["obj-1", "obj-3"]


def test_the_api_records_its_own_actions_for_the_list(app, server_api):
    server_api.post("/api/v1/api-keys", {"scope": "client", "name": "web"}, format="json")

    (row,) = results(server_api.get(URL, {"action": "api_key.created", "limit": 1}))

    assert row["actor"] == f"api_key:{app.server.api_key.prefix}"
    assert row["details"]["name"] == "web"


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2026-01-01T00:00:00"},  # no zone
        {"until": "yesterday"},
        {"action": "key.stolen"},
        {"object_id": "x" * 101},
        {"limit": "0"},
        {"cursor": "nonsense"},
        {"who": "me"},
    ],
)
def test_invalid_queries_are_400(server_api, query):
    details = assert_error(server_api.get(URL, query), 400, "validation_error")
    assert set(details) == set(query)


def test_times_with_a_zone_are_taken(server_api, rows):
    since = quote((rows[2].at - timedelta(minutes=1)).astimezone().isoformat())
    assert [r["object_id"] for r in results(server_api.get(f"{URL}?since={since}"))][-1] == (
        "obj-1"
    )
    assert server_api.get(URL, {"since": "2026-01-01T00:00:00Z"}).status_code == 200
    assert server_api.get(URL, {"since": "2026-01-01T09:00:00+09:00"}).status_code == 200


def test_pages_follow_next_without_repeats(app, server_api, rows):
    first = server_api.get(URL, {"limit": 2}).json()
    seen = [row["object_id"] for row in first["results"]]
    link = first["next"]
    while link:
        page = server_api.get(link).json()
        seen += [row["object_id"] for row in page["results"]]
        link = page["next"]

    assert len(seen) == 6 and seen[-3:] == ["obj-1", "obj-2", "obj-3"]


def test_client_keys_and_no_keys_may_not_read_it(client_api, anonymous_api):
    assert_error(client_api.get(URL), 403, "permission_denied")
    assert_error(anonymous_api.get(URL), 401, "authentication_failed")


def test_the_admin_lists_rows_and_changes_none(admin_client, app, rows):
    listing = admin_client.get("/admin/accounts/auditentry/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "obj-1" in page and "theirs" in page
    assert "Add audit entry" not in page

    filtered = admin_client.get(
        "/admin/accounts/auditentry/", {"action": "campaign.executed", "q": "obj-2"}
    )
    assert filtered.status_code == 200
    assert [e.object_id for e in filtered.context["cl"].result_list] == ["obj-2"]
    by_app = admin_client.get(
        "/admin/accounts/auditentry/", {"application__id__exact": str(app.application.pk)}
    )
    assert "theirs" not in by_app.content.decode()

    entry = rows[0]
    detail = admin_client.get(f"/admin/accounts/auditentry/{entry.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert admin_client.get("/admin/accounts/auditentry/add/").status_code == 403
    assert admin_client.post(f"/admin/accounts/auditentry/{entry.pk}/delete/").status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
