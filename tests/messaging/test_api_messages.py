"""POST/GET /messages, GET /messages/{id}, PUT /messages/{id}/status and Idempotency-Key."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.models import IdempotencyRecord
from messaging import delivery
from messaging.models import Message, MessageEvent, MessageStatus
from messaging.services.messages import Content, Delivery, message_send
from messaging.services.subscriptions import subscription_disable
from templates_app.services import template_create
from tests.assertions import assert_error
from tests.conftest import api_client, application_with_keys, fcm_token, subscription_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages"


def post(client, body, **headers):
    return client.post(URL, body, format="json", **headers)


def stored(application, subscriptions, *, campaign_id=None, **delivery_options) -> list[Message]:
    """Pending messages made by the sending service, as the API makes them."""
    return message_send(
        application=application,
        subscriptions=subscriptions,
        content=Content(title="Hi", body="There", data={"k": "v"}),
        delivery=Delivery(**delivery_options),
        campaign_id=campaign_id,
    ).messages


def succeeded(message: Message) -> Message:
    """The message as delivery leaves it after the provider accepted it."""
    message.succeed()
    message.sent_at = timezone.now()
    message.save(update_fields=["status", "sent_at"])
    return message


@pytest.fixture
def sub(app):
    return subscription_create(app.application)


# --- POST /messages: validation -----------------------------------------------------------------


def _ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "no target"}, "non_field_errors"),
        ({"subscription_ids": [], "title": "x"}, "subscription_ids"),
        ({"subscription_ids": _ids(10_001), "title": "x"}, "subscription_ids"),
        ({"subscription_id": "not-a-uuid", "title": "x"}, "subscription_id"),
        ({"subscription_ids": ["not-a-uuid"], "title": "x"}, "subscription_ids"),
        ({"external_user_id": "u", "channels": ["Fax"], "title": "x"}, "channels"),
        ({"external_user_id": "u", "channels": [], "title": "x"}, "channels"),
        ({"external_user_id": "u", "ttl": -1, "title": "x"}, "ttl"),
        ({"external_user_id": "u", "ttl": 28 * 24 * 3600 + 1, "title": "x"}, "ttl"),
        ({"external_user_id": "u", "collapse_id": "c" * 65, "title": "x"}, "collapse_id"),
        ({"external_user_id": "u", "send_after": "tomorrow morning", "title": "x"}, "send_after"),
        ({"external_user_id": "u", "priority": "urgent", "title": "x"}, "priority"),
        ({"external_user_id": "u"}, "non_field_errors"),
        ({"external_user_id": "u", "title": "", "body": ""}, "non_field_errors"),
        ({"external_user_id": "u", "template_id": str(uuid.uuid4()), "title": "x"}, "title"),
        ({"external_user_id": "u", "variables": {"a": "b"}, "title": "x"}, "variables"),
        ({"external_user_id": "u", "language": "ko", "title": "x"}, "language"),
        ({"external_user_id": "u", "template_id": "not-a-uuid"}, "template_id"),
        ({"external_user_id": "u", "title": "x", "colour": "red"}, "colour"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field_and_create_nothing(server_api, app, body, field):
    subscription_create(app.application, external_user_id="u")

    details = assert_error(post(server_api, body), 400, "validation_error")

    assert field in details, details
    assert Message.objects.count() == 0


def test_two_target_forms_are_400_naming_both(server_api, sub):
    body = {"subscription_id": str(sub.pk), "external_user_id": "u", "title": "x"}

    details = assert_error(post(server_api, body), 400, "validation_error")

    [message] = details["non_field_errors"]
    assert "subscription_id" in message and "external_user_id" in message
    assert Message.objects.count() == 0


def test_the_longest_ttl_and_collapse_id_are_accepted(server_api, sub):
    body = {
        "subscription_id": str(sub.pk),
        "title": "x",
        "ttl": 28 * 24 * 3600,
        "collapse_id": "c" * 64,
    }
    assert post(server_api, body).status_code == 202
    message = Message.objects.get()
    assert (message.ttl, message.collapse_id) == (28 * 24 * 3600, "c" * 64)


# --- POST /messages: targets ------------------------------------------------------------------


def test_another_applications_subscription_is_404(server_api, other_app):
    theirs = subscription_create(other_app.application)

    details = assert_error(
        post(server_api, {"subscription_id": str(theirs.pk), "title": "x"}), 404, "not_found"
    )

    assert details == {"subscription_ids": [str(theirs.pk)]}
    assert Message.objects.count() == 0


def test_one_unknown_id_among_many_is_404_listing_it(server_api, app, other_app):
    mine = [subscription_create(app.application) for _ in range(3)]
    theirs = subscription_create(other_app.application)
    unknown = str(uuid.uuid4())
    ids = [str(s.pk) for s in mine] + [unknown, str(theirs.pk)]

    details = assert_error(
        post(server_api, {"subscription_ids": ids, "title": "x"}), 404, "not_found"
    )

    assert details == {"subscription_ids": sorted([unknown, str(theirs.pk)])}
    assert Message.objects.count() == 0


def test_an_unknown_external_user_id_is_404(server_api, other_app):
    subscription_create(other_app.application, external_user_id="theirs")

    for user in ("nobody", "theirs"):
        assert_error(post(server_api, {"external_user_id": user, "title": "x"}), 404, "not_found")
    assert Message.objects.count() == 0


def test_an_unknown_or_foreign_template_is_404(server_api, sub, other_app):
    theirs = template_create(
        application=other_app.application,
        name="theirs",
        title_template="Hi",
        body_template="There",
        default_language="en",
    )

    for template_id in (str(uuid.uuid4()), str(theirs.template_id)):
        response = post(server_api, {"subscription_id": str(sub.pk), "template_id": template_id})
        assert_error(response, 404, "not_found")
    assert Message.objects.count() == 0


def test_a_template_message_is_rendered_and_records_its_version(server_api, app, sub):
    version = template_create(
        application=app.application,
        name="hello",
        title_template="Hello {{ name }}",
        body_template="Bye",
        default_language="en",
    )
    body = {
        "subscription_id": str(sub.pk),
        "template_id": str(version.template_id),
        "variables": {"name": "Kim"},
    }

    assert post(server_api, body).status_code == 202

    message = Message.objects.get()
    assert (message.title, message.body, message.template_version_id) == (
        "Hello Kim",
        "Bye",
        version.pk,
    )


def test_a_send_is_202_with_one_pending_message_and_its_content(server_api, app, sub):
    body = {
        "subscription_id": str(sub.pk),
        "title": "Hello",
        "body": "World",
        "data": {"screen": "home"},
        "priority": "high",
        "ttl": 60,
        "collapse_id": "promo",
    }

    response = post(server_api, body)

    assert response.status_code == 202, response.content
    [message] = Message.objects.all()
    assert response.json() == {
        "messages": [{"id": str(message.pk), "subscription_id": str(sub.pk), "status": "pending"}],
        "skipped": 0,
        "skipped_by_reason": {"disabled": 0, "opted_out": 0, "frequency_cap": 0},
    }
    assert (message.title, message.body, message.data) == ("Hello", "World", {"screen": "home"})
    assert (message.priority, message.ttl, message.collapse_id) == ("high", 60, "promo")
    assert (message.application_id, message.channel) == (app.application.pk, "iOSPush")
    assert message.enqueued_at is not None  # handed to delivery at once


def test_a_scheduled_send_waits_for_the_sweep(server_api, sub):
    later = timezone.now() + timedelta(hours=1)

    response = post(
        server_api, {"subscription_id": str(sub.pk), "title": "x", "send_after": later.isoformat()}
    )

    assert response.status_code == 202
    message = Message.objects.get()
    assert message.send_after == later
    assert message.enqueued_at is None


def test_disabled_subscriptions_are_skipped_and_counted(server_api, app):
    enabled = subscription_create(app.application)
    disabled = [subscription_create(app.application) for _ in range(2)]
    for subscription in disabled:
        subscription_disable(subscription_id=subscription.pk, reason="test")
    ids = [str(s.pk) for s in [enabled, *disabled]]

    response = post(server_api, {"subscription_ids": ids, "title": "x"})

    assert response.status_code == 202
    assert response.json()["skipped"] == 2
    assert [m["subscription_id"] for m in response.json()["messages"]] == [str(enabled.pk)]
    assert list(Message.objects.values_list("subscription_id", flat=True)) == [enabled.pk]


def test_a_disabled_single_target_is_skipped(server_api, sub):
    subscription_disable(subscription_id=sub.pk, reason="test")

    response = post(server_api, {"subscription_id": str(sub.pk), "title": "x"})

    assert response.status_code == 202
    assert response.json() == {
        "messages": [],
        "skipped": 1,
        "skipped_by_reason": {"disabled": 1, "opted_out": 0, "frequency_cap": 0},
    }
    assert Message.objects.count() == 0


def test_a_user_target_reaches_every_enabled_subscription(server_api, app):
    ios = subscription_create(app.application, external_user_id="kim")
    android = subscription_create(
        app.application, type="AndroidPush", token=fcm_token(), external_user_id="kim"
    )
    off = subscription_create(app.application, external_user_id="kim")
    subscription_disable(subscription_id=off.pk, reason="test")
    subscription_create(app.application, external_user_id="lee")

    response = post(server_api, {"external_user_id": "kim", "title": "x"})

    assert response.status_code == 202
    assert response.json()["skipped"] == 1
    assert {m["subscription_id"] for m in response.json()["messages"]} == {
        str(ios.pk),
        str(android.pk),
    }


def test_channels_filter_the_targets(server_api, app):
    subscription_create(app.application, external_user_id="kim")
    android = subscription_create(
        app.application, type="AndroidPush", token=fcm_token(), external_user_id="kim"
    )

    response = post(
        server_api, {"external_user_id": "kim", "channels": ["AndroidPush"], "title": "x"}
    )

    assert response.status_code == 202
    assert [m["subscription_id"] for m in response.json()["messages"]] == [str(android.pk)]
    assert list(Message.objects.values_list("channel", flat=True)) == ["AndroidPush"]


def test_duplicate_ids_make_one_message_per_subscription(server_api, app):
    a, b = subscription_create(app.application), subscription_create(app.application)

    response = post(
        server_api, {"subscription_ids": [str(a.pk), str(a.pk), str(b.pk)], "title": "x"}
    )

    assert response.status_code == 202
    assert len(response.json()["messages"]) == 2
    assert sorted(Message.objects.values_list("subscription_id", flat=True)) == sorted([a.pk, b.pk])


# --- Scopes and isolation -------------------------------------------------------------------------


def test_a_client_key_may_not_send_list_or_read_messages(client_api, app, sub):
    [message] = stored(app.application, [sub])

    assert_error(
        post(client_api, {"subscription_id": str(sub.pk), "title": "x"}), 403, "permission_denied"
    )
    assert_error(client_api.get(URL), 403, "permission_denied")
    response = client_api.get(f"{URL}/{message.pk}")
    assert_error(response, 403, "permission_denied")
    assert "There" not in response.content.decode()
    assert Message.objects.count() == 1


def test_a_client_key_may_report_a_status(client_api, app, sub):
    [message] = stored(app.application, [sub])
    succeeded(message)

    response = client_api.put(f"{URL}/{message.pk}/status", {"status": "received"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "received"
    message.refresh_from_db()
    assert message.status == MessageStatus.RECEIVED
    event = message.events.get(type="status")
    assert event.status == "received"
    assert event.details == {"actor": f"api_key:{app.client.api_key.prefix}"}


def test_another_applications_message_is_404(other_server_api, other_client_api, app, sub):
    [message] = stored(app.application, [sub])
    succeeded(message)

    assert_error(other_server_api.get(f"{URL}/{message.pk}"), 404, "not_found")
    for client in (other_server_api, other_client_api):
        response = client.put(f"{URL}/{message.pk}/status", {"status": "received"}, format="json")
        assert_error(response, 404, "not_found")
    assert other_server_api.get(URL).json() == {"results": [], "next": None}
    message.refresh_from_db()
    assert message.status == MessageStatus.SUCCESSFUL


def test_an_unknown_message_is_404(server_api):
    assert_error(server_api.get(f"{URL}/{uuid.uuid4()}"), 404, "not_found")


# --- GET /messages ------------------------------------------------------------------------------


def test_the_list_filters(server_api, app):
    ios = subscription_create(app.application)
    android = subscription_create(app.application, type="AndroidPush", token=fcm_token())
    email = subscription_create(app.application, type="Email", token="kim@example.com")
    campaign = uuid.uuid4()
    [to_ios] = stored(app.application, [ios], campaign_id=campaign)
    [to_android] = stored(app.application, [android])
    [to_email] = stored(app.application, [email])
    delivery.deliver_batch([str(to_email.pk)])  # no Email adapter: fails at once

    def listed(**query) -> set[str]:
        response = server_api.get(URL, query)
        assert response.status_code == 200, response.content
        return {m["id"] for m in response.json()["results"]}

    assert listed() == {str(to_ios.pk), str(to_android.pk), str(to_email.pk)}
    assert listed(status="failed") == {str(to_email.pk)}
    assert listed(status="pending") == {str(to_ios.pk), str(to_android.pk)}
    assert listed(campaign_id=str(campaign)) == {str(to_ios.pk)}
    assert listed(subscription_id=str(android.pk)) == {str(to_android.pk)}
    assert listed(channel="AndroidPush") == {str(to_android.pk)}
    assert listed(channel="AndroidPush", status="failed") == set()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"campaign_id": "nope"}, "campaign_id"),
        ({"subscription_id": "nope"}, "subscription_id"),
        ({"channel": "Fax"}, "channel"),
        ({"limit": "0"}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_an_invalid_filter_is_400(server_api, query, field):
    details = assert_error(server_api.get(URL, query), 400, "validation_error")
    assert field in details


def test_the_list_is_paginated_newest_first_following_next(server_api, app, sub):
    messages = [stored(app.application, [sub])[0] for _ in range(5)]

    seen, pages = [], 0
    response = server_api.get(URL, {"limit": 2})
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next"}
        assert len(body["results"]) <= 2
        seen += [m["id"] for m in body["results"]]
        pages += 1
        if body["next"] is None:
            break
        response = server_api.get(body["next"])

    assert pages == 3
    assert seen == [str(m.pk) for m in reversed(messages)]


# --- GET /messages/{id} ---------------------------------------------------------------------


def test_a_pending_message_has_the_contracts_fields(server_api, app, sub):
    campaign = uuid.uuid4()
    [message] = stored(app.application, [sub], campaign_id=campaign)

    body = server_api.get(f"{URL}/{message.pk}").json()

    required = {"id", "subscription_id", "status", "title", "body", "data", "campaign_id"}
    required |= {"attempts", "error", "created_at", "sent_at", "events"}
    assert required <= set(body)
    assert body["id"] == str(message.pk)
    assert body["subscription_id"] == str(sub.pk)
    assert (body["status"], body["title"], body["body"], body["data"]) == (
        "pending",
        "Hi",
        "There",
        {"k": "v"},
    )
    assert body["campaign_id"] == str(campaign)
    assert (body["attempts"], body["error"], body["sent_at"], body["events"]) == (0, None, None, [])
    assert parse_datetime(body["created_at"]).tzinfo is not None


def test_a_failed_message_shows_its_error_and_events(server_api, app):
    email = subscription_create(app.application, type="Email", token="kim@example.com")
    [message] = stored(app.application, [email])
    delivery.deliver_batch([str(message.pk)], queue="messages")

    body = server_api.get(f"{URL}/{message.pk}").json()

    assert body["status"] == "failed"
    assert body["attempts"] == 1
    assert body["error"]["code"] == "channel_unavailable"
    assert body["error"]["permanent"] is True
    assert "Email" in body["error"]["message"]
    assert [(e["type"], e["status"]) for e in body["events"]] == [
        ("attempt", ""),
        ("status", "failed"),
    ]
    for event in body["events"]:
        assert set(event) >= {"at", "details"}
        assert parse_datetime(event["at"]).tzinfo is not None
    assert body["events"][0]["details"]["queue"] == "messages"


# --- PUT /messages/{id}/status -----------------------------------------------------------------


@pytest.mark.parametrize("status", ["bogus", "pending", "failed", "successful", "cancelled", ""])
def test_a_status_clients_may_not_report_is_400(client_api, app, sub, status):
    [message] = stored(app.application, [sub])
    succeeded(message)

    response = client_api.put(f"{URL}/{message.pk}/status", {"status": status}, format="json")

    assert "status" in assert_error(response, 400, "validation_error")
    message.refresh_from_db()
    assert message.status == MessageStatus.SUCCESSFUL


def test_an_illegal_report_is_409_and_changes_nothing(client_api, app, sub):
    [message] = stored(app.application, [sub])

    for status in ("received", "converted"):
        response = client_api.put(f"{URL}/{message.pk}/status", {"status": status}, format="json")
        details = assert_error(response, 409, "invalid_transition")
        assert details == {"status": "pending", "requested": status}
    message.refresh_from_db()
    assert message.status == MessageStatus.PENDING
    assert not MessageEvent.objects.filter(message=message).exists()


def test_repeating_a_report_is_a_200_no_op(server_api, app, sub):
    [message] = stored(app.application, [sub])
    succeeded(message)
    url = f"{URL}/{message.pk}/status"

    for _ in range(2):
        response = server_api.put(url, {"status": "converted"}, format="json")
        assert response.status_code == 200
        assert response.json()["status"] == "converted"

    assert message.events.filter(type="status", status="converted").count() == 1


# --- Idempotency-Key ----------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_first_response(server_api, sub):
    body = {"subscription_id": str(sub.pk), "title": "Once"}

    first = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k-1")
    second = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert [str(pk) for pk in Message.objects.values_list("pk", flat=True)] == [
        first.json()["messages"][0]["id"]
    ]


def test_the_same_key_with_another_body_is_422(server_api, sub):
    post(server_api, {"subscription_id": str(sub.pk), "title": "Once"}, HTTP_IDEMPOTENCY_KEY="k")

    response = post(
        server_api, {"subscription_id": str(sub.pk), "title": "Twice"}, HTTP_IDEMPOTENCY_KEY="k"
    )

    assert assert_error(response, 422, "idempotency_conflict") == {"idempotency_key": "k"}
    assert list(Message.objects.values_list("title", flat=True)) == ["Once"]


def test_without_a_key_every_post_sends(server_api, sub):
    body = {"subscription_id": str(sub.pk), "title": "x"}
    post(server_api, body)
    post(server_api, body)
    assert Message.objects.count() == 2


def test_a_refused_request_records_nothing_under_its_key(server_api, sub):
    bad = post(server_api, {"subscription_id": str(sub.pk)}, HTTP_IDEMPOTENCY_KEY="k")
    assert_error(bad, 400, "validation_error")

    good = post(
        server_api, {"subscription_id": str(sub.pk), "title": "x"}, HTTP_IDEMPOTENCY_KEY="k"
    )

    assert good.status_code == 202
    assert Message.objects.count() == 1


def test_keys_are_per_application(server_api, other_server_api, sub, other_app):
    theirs = subscription_create(other_app.application)

    mine = post(
        server_api, {"subscription_id": str(sub.pk), "title": "x"}, HTTP_IDEMPOTENCY_KEY="k"
    )
    other = post(
        other_server_api,
        {"subscription_id": str(theirs.pk), "title": "x"},
        HTTP_IDEMPOTENCY_KEY="k",
    )

    assert mine.status_code == other.status_code == 202
    assert other.json()["messages"][0]["subscription_id"] == str(theirs.pk)
    assert Message.objects.count() == 2


def test_a_key_older_than_24_hours_no_longer_replays(server_api, sub):
    body = {"subscription_id": str(sub.pk), "title": "x"}
    first = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))

    second = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k")

    assert second.status_code == 202
    assert second.json() != first.json()
    assert Message.objects.count() == 2
    third = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k")  # the fresh record replays
    assert third.json() == second.json()
    assert Message.objects.count() == 2


def test_a_key_just_under_24_hours_still_replays(server_api, sub):
    body = {"subscription_id": str(sub.pk), "title": "x"}
    first = post(server_api, body, HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))

    assert post(server_api, body, HTTP_IDEMPOTENCY_KEY="k").json() == first.json()
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_set_of_messages():
    keys = application_with_keys("concurrent")
    subscriptions = [subscription_create(keys.application) for _ in range(3)]
    body = {"subscription_ids": [str(s.pk) for s in subscriptions], "title": "x"}
    threads_count = 6
    barrier = threading.Barrier(threads_count)
    responses: list = [None] * threads_count

    def request(i: int) -> None:
        try:
            client = api_client(keys.server.raw)
            barrier.wait(timeout=10)
            responses[i] = post(client, body, HTTP_IDEMPOTENCY_KEY="same")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [r.status_code for r in responses] == [202] * threads_count, [
        r.content for r in responses
    ]
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)
    ids = {m["id"] for m in bodies[0]["messages"]}
    assert {str(pk) for pk in Message.objects.values_list("pk", flat=True)} == ids
    assert len(ids) == 3
    assert IdempotencyRecord.objects.count() == 1
    keys.application.quota.refresh_from_db()
    assert keys.application.quota.day_used == 3  # the losers' quota went back with them
