"""A user's tags (GET/PUT /users/{external_user_id}), its erasure (DELETE) and its export
(GET .../export): what each reads, writes and deletes, row by row, and the audit they leave."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import audit
from accounts.models import AuditEntry
from campaigns import services as campaign_services
from campaigns.models import CampaignRun, RunStatus
from messaging import delivery
from messaging.inbox.services import inbox_item_read
from messaging.models import (
    InboxCount,
    InboxItem,
    Message,
    MessageEvent,
    MessageStatus,
    Subscription,
    SubscriptionEvent,
    User,
)
from messaging.services import erasure
from messaging.services.messages import Content, Delivery, message_send
from tests.assertions import assert_error
from tests.campaigns.conftest import campaign_create, fanout
from tests.conftest import api_client, subscription_create

pytestmark = pytest.mark.django_db


def user_url(external_user_id: str, action: str = "") -> str:
    return f"/api/v1/users/{external_user_id}" + (f"/{action}" if action else "")


def sent(application, subscription, n: int = 1, deliver: bool = True, **delivery_fields):
    """`n` messages to the subscription; delivered in-process when `deliver`."""
    messages = message_send(
        application=application,
        subscriptions=[subscription] * n,
        content=Content(title="Hi", body="there", data={"k": "v"}),
        delivery=Delivery(**delivery_fields),
    ).messages
    if deliver:
        delivery.deliver_batch([str(m.pk) for m in messages])
    return messages


def person(application, external_user_id: str = "alice") -> tuple[User, list[Subscription]]:
    """A user with an in-app inbox (delivered messages, inbox items and counts, one read),
    an iOS device (a message pending for later), and tags."""
    inbox = subscription_create(
        application,
        type="InAppMessage",
        token=f"{external_user_id}-device",
        external_user_id=external_user_id,
        tags={"plan": "gold"},
    )
    ios = subscription_create(application, external_user_id=external_user_id, country="KR")
    delivered = sent(application, inbox, 3)
    inbox_item_read(subscription=inbox, item_id=delivered[0].pk, actor="test")
    sent(application, ios, 1, deliver=False, send_after=timezone.now() + timedelta(hours=1))
    user = User.objects.get(application=application, external_user_id=external_user_id)
    user.tags = {"tier": "vip"}
    user.save()
    return user, [inbox, ios]


def rows_of(subscriptions) -> dict[str, int]:
    ids = [s.pk for s in subscriptions]
    return {
        "subscriptions": Subscription.objects.filter(pk__in=ids).count(),
        "subscription_events": SubscriptionEvent.objects.filter(subscription_id__in=ids).count(),
        "messages": Message.objects.filter(subscription_id__in=ids).count(),
        "message_events": MessageEvent.objects.filter(message__subscription_id__in=ids).count(),
        "inbox_items": InboxItem.objects.filter(subscription_id__in=ids).count(),
        "inbox_counts": InboxCount.objects.filter(subscription_id__in=ids).count(),
    }


# --- Tags ----------------------------------------------------------------------------------------


def test_put_creates_the_user_with_its_tags_and_get_reads_them(app, server_api):
    response = server_api.put(
        user_url("bob"), {"tags": {"tier": "vip", "city": "Seoul"}}, format="json"
    )

    assert response.status_code == 200, response.content
    user = User.objects.get(application=app.application, external_user_id="bob")
    assert user.tags == {"tier": "vip", "city": "Seoul"}
    body = server_api.get(user_url("bob")).json()
    assert body == {
        "id": str(user.pk),
        "external_user_id": "bob",
        "tags": {"tier": "vip", "city": "Seoul"},
        "created_at": body["created_at"],
        "subscription_ids": [],
    }
    assert response.json() == body


def test_put_merges_and_null_or_empty_removes(app, server_api):
    subscription = subscription_create(app.application, external_user_id="bob")
    server_api.put(user_url("bob"), {"tags": {"a": "1", "b": "2", "c": "3"}}, format="json")

    response = server_api.put(
        user_url("bob"), {"tags": {"a": None, "b": "", "d": " 4 "}}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["tags"] == {"c": "3", "d": "4"}
    assert response.json()["subscription_ids"] == [str(subscription.pk)]
    assert User.objects.get(external_user_id="bob").tags == {"c": "3", "d": "4"}


def test_a_user_keeps_at_most_100_tags(app, server_api):
    server_api.put(user_url("bob"), {"tags": {f"a{n}": "x" for n in range(60)}}, format="json")

    response = server_api.put(
        user_url("bob"), {"tags": {f"b{n}": "x" for n in range(41)}}, format="json"
    )

    assert "tags" in assert_error(response, 400, "validation_error")
    assert len(User.objects.get(external_user_id="bob").tags) == 60


def test_an_external_id_with_a_slash_is_one_user(app, server_api):
    server_api.put(user_url("team/kim"), {"tags": {"a": "1"}}, format="json")

    assert server_api.get(user_url("team/kim")).json()["external_user_id"] == "team/kim"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "tags"),
        ({"tags": []}, "tags"),
        ({"tags": {"a": 5}}, "tags"),
        ({"tags": {"": "x"}}, "tags"),
        ({"tags": {"a": "x" * 256}}, "tags"),
        ({"tags": {"a": "\x00"}}, "tags"),
        ({"tags": {f"t{n}": "x" for n in range(101)}}, "tags"),
        ({"tags": {}, "plan": "gold"}, "plan"),
    ],
)
def test_put_refuses_bad_tags(app, server_api, body, field):
    details = assert_error(
        server_api.put(user_url("bob"), body, format="json"), 400, "validation_error"
    )

    assert field in details
    assert not User.objects.filter(external_user_id="bob").exists()


def test_an_external_id_too_long_is_a_validation_error(server_api):
    details = assert_error(
        server_api.put(user_url("x" * 256), {"tags": {}}, format="json"), 400, "validation_error"
    )
    assert "external_user_id" in details
    assert_error(server_api.get(user_url("x" * 256)), 400, "validation_error")


def test_unknown_users_are_404_and_another_applications_too(app, server_api, other_server_api):
    subscription_create(app.application, external_user_id="alice")

    assert_error(server_api.get(user_url("nobody")), 404, "not_found")
    assert_error(other_server_api.get(user_url("alice")), 404, "not_found")
    assert_error(other_server_api.delete(user_url("alice")), 404, "not_found")
    assert_error(other_server_api.get(user_url("alice", "export")), 404, "not_found")
    assert User.objects.filter(external_user_id="alice").exists()


def test_client_keys_may_not_read_change_erase_or_export(app, client_api):
    subscription_create(app.application, external_user_id="alice")

    assert_error(client_api.get(user_url("alice")), 403, "permission_denied")
    assert_error(
        client_api.put(user_url("alice"), {"tags": {"a": "b"}}, format="json"),
        403,
        "permission_denied",
    )
    assert_error(client_api.delete(user_url("alice")), 403, "permission_denied")
    assert_error(client_api.get(user_url("alice", "export")), 403, "permission_denied")
    assert User.objects.filter(external_user_id="alice").exists()


# --- Erase ---------------------------------------------------------------------------------------


def test_delete_erases_the_user_and_everything_of_its_subscriptions(app, server_api):
    user, subscriptions = person(app.application)
    other_user, others = person(app.application, "bruno")
    before = rows_of(subscriptions)
    assert all(before.values()), before  # every kind has rows to erase
    others_before = rows_of(others)

    response = server_api.delete(user_url("alice"))

    assert response.status_code == 204, response.content
    assert response.content == b""
    assert not User.objects.filter(pk=user.pk).exists()
    assert set(rows_of(subscriptions).values()) == {0}
    assert rows_of(others) == others_before
    assert User.objects.filter(pk=other_user.pk).exists()
    (entry,) = AuditEntry.objects.filter(action=audit.USER_ERASED)
    assert (entry.application_id, entry.object_type, entry.object_id) == (
        app.application.pk,
        "user",
        str(user.pk),
    )
    assert entry.actor == f"api_key:{app.server.api_key.prefix}"
    assert entry.api_key_id == app.server.api_key.pk
    assert entry.details == {"users": 1, "fallback_chains": 0, **before, "frequency_windows": 0}
    assert "alice" not in json.dumps(entry.details)
    assert_error(server_api.delete(user_url("alice")), 404, "not_found")


def test_erasing_a_user_without_subscriptions(app, server_api):
    server_api.put(user_url("bob"), {"tags": {"a": "1"}}, format="json")

    assert server_api.delete(user_url("bob")).status_code == 204

    assert not User.objects.exists()
    entry = AuditEntry.objects.get(action=audit.USER_ERASED)
    assert entry.details == {
        "users": 1,
        **dict.fromkeys(
            [
                "subscriptions",
                "subscription_events",
                "messages",
                "message_events",
                "inbox_items",
                "inbox_counts",
                "fallback_chains",
                "frequency_windows",
            ],
            0,
        ),
    }


def test_the_erasure_takes_as_many_statements_for_200_messages_as_for_4(app):
    few, _ = person(app.application)
    many, subscriptions = person(app.application, "bruno")
    sent(app.application, subscriptions[1], 200, deliver=False)

    statements = []
    for user in (few, many):
        with CaptureQueriesContext(connection) as queries:
            counts = erasure.user_erase(user=user, actor="test")
        statements.append(len(queries.captured_queries))

    assert counts["messages"] == 204
    assert statements[0] == statements[1], statements


def test_pending_campaign_messages_erased_leave_their_run_able_to_complete(app):
    user, _ = person(app.application)
    subscription_create(app.application)  # someone else, who gets the campaign too
    campaign = campaign_create(app.application)
    campaign_services.campaign_execute(campaign=campaign, actor=audit.SYSTEM)
    run = CampaignRun.objects.get(campaign=campaign)
    fanout(run.pk)
    run.refresh_from_db()
    assert (run.targeted, run.pending) == (3, 3)

    erasure.user_erase(user=user, actor="test")
    [left] = Message.objects.filter(campaign_run_id=run.pk)
    delivery.deliver_batch([str(left.pk)])  # no credentials: it fails, the last one pending

    run.refresh_from_db()
    assert (run.pending, run.cancelled, run.status) == (0, 2, RunStatus.COMPLETED)


def test_leftovers_a_fan_out_wrote_after_the_erasure_are_deleted(app):
    user, subscriptions = person(app.application)
    # What a fan-out step read before the erasure, and writes after it.
    stale = [Subscription(pk=s.pk, type=s.type, language="") for s in subscriptions]
    erasure.user_erase(user=user, actor="test")
    late = message_send(
        application=app.application,
        subscriptions=stale,
        content=Content(title="late"),
        delivery=Delivery(),
    ).messages
    delivery.deliver_batch([str(m.pk) for m in late])
    assert {m.status for m in Message.objects.filter(pk__in=[m.pk for m in late])} == {
        MessageStatus.FAILED
    }
    assert set(
        Message.objects.filter(pk__in=[m.pk for m in late]).values_list("error_code", flat=True)
    ) == {"subscription_deleted"}

    found = erasure.erase_leftovers(subscription_ids=[str(s.pk) for s in subscriptions])

    assert found["messages"] == 2 and found["message_events"] >= 2
    assert not Message.objects.filter(pk__in=[m.pk for m in late]).exists()


def test_the_erasure_publishes_the_leftovers_sweep_after_commit(
    app, django_capture_on_commit_callbacks, monkeypatch
):
    user, subscriptions = person(app.application)
    published = []
    monkeypatch.setattr(
        erasure.dispatch, "publish", lambda task, **kw: published.append((task, kw))
    )

    with django_capture_on_commit_callbacks(execute=True):
        erasure.user_erase(user=user, actor="test")

    assert published == [
        (
            "messaging.erase_leftovers",
            {
                "args": [[str(s.pk) for s in sorted(subscriptions, key=lambda s: s.pk)]],
                "queue": "critical",
                "countdown": erasure.LEFTOVERS_DELAY_SECONDS,
            },
        )
    ]


# --- Export --------------------------------------------------------------------------------------


def export_of(client, external_user_id: str) -> dict:
    response = client.get(user_url(external_user_id, "export"))
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="user-')
    return json.loads(b"".join(response.streaming_content))


def test_the_export_holds_every_row_of_the_user_and_no_one_elses(
    app, other_app, server_api, other_server_api
):
    user, subscriptions = person(app.application)
    person(app.application, "bruno")
    stranger, _ = person(other_app.application, "alice")  # the same external id elsewhere

    document = export_of(server_api, "alice")

    assert set(document) == {"user", "subscriptions", "messages"}
    assert document["user"] == {
        "id": str(user.pk),
        "external_user_id": "alice",
        "tags": {"tier": "vip"},
        "preferences": {},
        "created_at": document["user"]["created_at"],
    }
    by_id = {s["id"]: s for s in document["subscriptions"]}
    assert set(by_id) == {str(s.pk) for s in subscriptions}
    for subscription in subscriptions:
        exported = by_id[str(subscription.pk)]
        assert exported["token"] == subscription.token  # decrypted
        assert exported["type"] == subscription.type
        assert {e["id"] for e in exported["events"]} == set(
            SubscriptionEvent.objects.filter(subscription=subscription).values_list("pk", flat=True)
        )
    inbox, ios = subscriptions
    assert by_id[str(inbox.pk)]["tags"] == {"plan": "gold"}
    assert by_id[str(inbox.pk)]["inbox_count"] == {"unread": 2, "total": 3}
    assert by_id[str(ios.pk)]["country"] == "KR"
    assert by_id[str(ios.pk)]["inbox_count"] is None

    ids = [s.pk for s in subscriptions]
    messages = {m["id"]: m for m in document["messages"]}
    assert set(messages) == {
        str(pk)
        for pk in Message.objects.filter(subscription_id__in=ids).values_list("pk", flat=True)
    }
    events = [e["id"] for m in document["messages"] for e in m["events"]]
    assert sorted(events) == sorted(
        MessageEvent.objects.filter(message__subscription_id__in=ids).values_list("pk", flat=True)
    )
    items = [m["inbox_item"] for m in document["messages"] if m["inbox_item"]]
    assert len(items) == InboxItem.objects.filter(subscription_id__in=ids).count() == 3
    received = next(m for m in document["messages"] if m["status"] == "received")
    assert (received["title"], received["body"], received["data"]) == ("Hi", "there", {"k": "v"})
    assert received["subscription_id"] == str(inbox.pk)
    assert received["sent_at"] and received["inbox_item"]["title"] == "Hi"
    pending = next(m for m in document["messages"] if m["status"] == "pending")
    assert pending["send_after"] and pending["channel"] == "iOSPush"
    # Nobody else's rows: no id of the other users' subscriptions or messages appears.
    text = json.dumps(document)
    others = Subscription.objects.exclude(pk__in=ids)
    assert not [str(s.pk) for s in others if str(s.pk) in text]
    assert not [
        str(m)
        for m in Message.objects.exclude(subscription_id__in=ids).values_list("pk", flat=True)
        if str(m) in text
    ]
    assert str(stranger.pk) not in text

    (entry,) = AuditEntry.objects.filter(action=audit.USER_EXPORTED)
    assert (entry.object_type, entry.object_id, entry.details) == (
        "user",
        str(user.pk),
        {"subscriptions": 2},
    )


def test_the_export_reads_messages_a_page_at_a_time(app, server_api, monkeypatch):
    from messaging.selectors import export

    monkeypatch.setattr(export, "PAGE", 3)
    user, subscriptions = person(app.application)
    sent(app.application, subscriptions[1], 5, deliver=False)

    document = export_of(server_api, "alice")

    exported = [m["id"] for m in document["messages"]]
    assert len(exported) == len(set(exported)) == 9
    # Per subscription newest first.
    ios = [m for m in document["messages"] if m["subscription_id"] == str(subscriptions[1].pk)]
    assert [m["created_at"] for m in ios] == sorted((m["created_at"] for m in ios), reverse=True)


def test_the_export_of_a_user_without_subscriptions(app, server_api):
    server_api.put(user_url("bob"), {"tags": {"a": "1"}}, format="json")

    document = export_of(server_api, "bob")

    assert document["subscriptions"] == [] and document["messages"] == []
    assert document["user"]["tags"] == {"a": "1"}


def test_an_erased_user_exports_nothing_more(app, server_api):
    person(app.application)
    server_api.delete(user_url("alice"))

    assert_error(server_api.get(user_url("alice", "export")), 404, "not_found")


def test_a_revoked_key_is_refused(app):
    assert_error(api_client("nope").delete(user_url("alice")), 401, "authentication_failed")
