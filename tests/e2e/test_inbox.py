"""The in-app inbox end to end: messages sent through the API are delivered by a real Celery
worker as inbox items; the inbox API lists and counts them; the ASGI app under hypercorn streams
them over Server-Sent Events on loopback (live within a second, resumable with Last-Event-ID);
another application's key and, with identity verification on, a wrong or missing user hash are
refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.identity import user_hash
from accounts.models import Application
from accounts.services import api_key_create, application_create
from messaging.models import Message

from .conftest import wait_for
from .inbox_support import SSEClient, asgi_server_fixture  # noqa: F401 (the asgi_server fixture)

pytestmark = pytest.mark.e2e


def api(key: str, user_hash: str | None = None) -> APIClient:
    client = APIClient()
    headers = {"HTTP_X_API_KEY": key}
    if user_hash is not None:
        headers["HTTP_X_USER_HASH"] = user_hash
    client.credentials(**headers)
    return client


def register(app, *, user: str | None = None) -> str:
    body = {"type": "InAppMessage", "token": f"install-{uuid.uuid4().hex[:12]}"}
    if user:
        body["external_user_id"] = user
    response = api(app.client_key).post("/api/v1/subscriptions", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def send(app, subscription_id: str, title: str = "Hello", **extra) -> str:
    body = {"subscription_ids": [subscription_id], "title": title, "body": "World", **extra}
    response = api(app.server_key).post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    [message] = response.json()["messages"]
    return message["id"]


def delivered(*ids: str):
    def check():
        statuses = dict(Message.objects.filter(pk__in=ids).values_list("pk", "status"))
        return len(statuses) == len(ids) and all(
            s in ("successful", "received") for s in statuses.values()
        )

    return check


def inbox(app, subscription_id: str, state: str = "all", user_hash: str | None = None):
    return api(app.client_key, user_hash).get(
        "/api/v1/inbox", {"subscription_id": subscription_id, "state": state}
    )


def count(app, subscription_id: str) -> dict:
    response = api(app.client_key).get("/api/v1/inbox/count", {"subscription_id": subscription_id})
    assert response.status_code == 200, response.content
    return response.json()


def post(app, subscription_id: str, path: str):
    return api(app.client_key).post(
        f"/api/v1/inbox/{path}?subscription_id={subscription_id}", format="json"
    )


def open_stream(server, app, subscription_id: str, **extra) -> SSEClient:
    params = {"subscription_id": subscription_id, "api_key": app.client_key}
    headers = extra.pop("headers", None)
    params.update(extra)
    stream = SSEClient(f"{server.url}/api/v1/inbox/stream", params=params, headers=headers)
    assert stream.status == 200, stream.response.text
    assert stream.content_type.startswith("text/event-stream")
    # The stream is subscribed once its first bytes (the retry: hint) came.
    wait_for(lambda: stream.retry is not None, timeout=10, what="the stream's retry: hint")
    return stream


def test_messages_arrive_as_items_with_counts_and_read_makes_them_received(live_app):
    subscription = register(live_app)
    ids = []
    for n in range(3):  # one after the other: an item's time is its delivery's
        ids.append(send(live_app, subscription, title=f"Message {n}"))
        wait_for(delivered(*ids), timeout=30, what=f"message {n} to be delivered")
    assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "successful"
    }

    listed = inbox(live_app, subscription)
    assert listed.status_code == 200, listed.content
    items = listed.json()["results"]
    assert [item["id"] for item in items] == list(reversed(ids))  # newest first
    assert [item["title"] for item in items] == ["Message 2", "Message 1", "Message 0"]
    assert all(item["read_at"] is None and item["archived_at"] is None for item in items)
    assert count(live_app, subscription) == {"unread": 3, "total": 3}

    read = post(live_app, subscription, f"{ids[0]}/read")
    assert read.status_code == 200, read.content
    assert read.json()["read_at"] is not None
    assert Message.objects.get(pk=ids[0]).status == "received"
    assert count(live_app, subscription) == {"unread": 2, "total": 3}
    assert [i["id"] for i in inbox(live_app, subscription, "unread").json()["results"]] == [
        ids[2],
        ids[1],
    ]
    assert [i["id"] for i in inbox(live_app, subscription, "read").json()["results"]] == [ids[0]]

    assert post(live_app, subscription, f"{ids[1]}/archive").status_code == 200
    assert count(live_app, subscription) == {"unread": 1, "total": 2}
    assert [i["id"] for i in inbox(live_app, subscription, "archived").json()["results"]] == [
        ids[1]
    ]

    assert post(live_app, subscription, "read-all").status_code == 200
    assert count(live_app, subscription) == {"unread": 0, "total": 2}
    assert Message.objects.get(pk=ids[2]).status == "received"


def test_a_stream_on_loopback_gets_the_item_and_the_count_within_a_second(live_app, asgi_server):
    subscription = register(live_app)
    stream = open_stream(asgi_server, live_app, subscription)
    try:
        latencies = []
        for n in range(3):
            sent_at = time.monotonic()
            message_id = send(live_app, subscription, title=f"Live {n}")
            arrived, event = stream.until(lambda e: e["event"] == "message", timeout=10)
            item = json.loads(event["data"])
            assert item["id"] == message_id and item["title"] == f"Live {n}"
            assert event.get("id"), "every event carries an id (for Last-Event-ID)"
            counted, event = stream.until(lambda e: e["event"] == "count", timeout=10)
            assert json.loads(event["data"]) == {"unread": n + 1, "total": n + 1}
            latencies.append((arrived - sent_at, counted - sent_at))
        assert all(item < 1.0 and count_ < 1.0 for item, count_ in latencies), latencies

        # Reading it is a count event too.
        assert post(live_app, subscription, f"{message_id}/read").status_code == 200
        _, event = stream.until(lambda e: e["event"] == "count", timeout=5)
        assert json.loads(event["data"]) == {"unread": 2, "total": 3}
    finally:
        stream.close()


@pytest.mark.parametrize("resume_by", ["header", "query"])
def test_a_stream_cut_and_resumed_with_last_event_id_misses_nothing(
    live_app, asgi_server, resume_by
):
    subscription = register(live_app)
    stream = open_stream(asgi_server, live_app, subscription)
    first = send(live_app, subscription, title="Before the cut")
    _, event = stream.until(lambda e: e["event"] == "count", timeout=10)
    last_id = event["id"]
    stream.close()

    missed = [send(live_app, subscription, title=f"While away {n}") for n in range(3)]
    wait_for(delivered(*missed), timeout=30, what="the messages sent while away")

    if resume_by == "header":
        resumed = open_stream(
            asgi_server, live_app, subscription, headers={"Last-Event-ID": last_id}
        )
    else:
        resumed = open_stream(asgi_server, live_app, subscription, last_event_id=last_id)
    try:
        events = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len([e for e in events if e["event"] == "message"]) < 3
            or not any(
                e["event"] == "count" and json.loads(e["data"])["total"] == 4 for e in events
            )
        ):
            events.extend(resumed.drain(0.3))
        items = [json.loads(e["data"])["id"] for e in events if e["event"] == "message"]
        assert items == missed, events  # in order, none lost, nothing before the cut again
        assert first not in items
        counts = [json.loads(e["data"]) for e in events if e["event"] == "count"]
        assert counts[-1] == {"unread": 4, "total": 4}
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), "an event twice"

        # ... and it is live again afterwards.
        after = send(live_app, subscription, title="After the resume")
        _, event = resumed.until(lambda e: e["event"] == "message", timeout=5)
        assert json.loads(event["data"])["id"] == after
    finally:
        resumed.close()


def test_another_applications_key_gets_404(live_app, asgi_server):
    subscription = register(live_app)
    message_id = send(live_app, subscription)
    wait_for(delivered(message_id), timeout=30, what="the message to be delivered")
    other = application_create(name="other")
    other.client_key = api_key_create(application=other, scope="client").raw
    other.server_key = api_key_create(application=other, scope="server").raw

    for key in (other.client_key, other.server_key):
        client = api(key)
        assert client.get("/api/v1/inbox", {"subscription_id": subscription}).status_code == 404
        assert (
            client.get("/api/v1/inbox/count", {"subscription_id": subscription}).status_code == 404
        )
        answer = client.post(f"/api/v1/inbox/{message_id}/read?subscription_id={subscription}")
        assert answer.status_code == 404
        stream = SSEClient(
            f"{asgi_server.url}/api/v1/inbox/stream",
            params={"subscription_id": subscription, "api_key": key},
        )
        assert stream.status == 404, stream.response.text
        stream.close()
    # And its own subscription does not show the first application's item.
    assert Message.objects.get(pk=message_id).status == "successful"


def test_with_identity_verification_a_wrong_or_missing_hash_is_401(live_app, asgi_server):
    user = f"user-{uuid.uuid4().hex[:8]}"
    subscription = register(live_app, user=user)
    message_id = send(live_app, subscription)
    wait_for(delivered(message_id), timeout=30, what="the message to be delivered")

    turned = api(live_app.server_key).put(
        "/api/v1/applications/current", {"identity_verification": True}, format="json"
    )
    assert turned.status_code == 200, turned.content
    assert turned.json()["identity_verification"] is True
    secret = Application.objects.get(pk=live_app.pk).identity_secret
    assert secret, "turning identity verification on gives the application a secret"
    right = user_hash(secret, user)  # what the application's backend computes
    assert right == hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()
    wrong = user_hash("not the secret", user)

    for given in (None, "", wrong, right[:-1] + ("0" if right[-1] != "0" else "1")):
        answer = inbox(live_app, subscription, user_hash=given)
        assert answer.status_code == 401, (given, answer.content)
        params = {"subscription_id": subscription, "api_key": live_app.client_key}
        if given is not None:
            params["user_hash"] = given
        stream = SSEClient(f"{asgi_server.url}/api/v1/inbox/stream", params=params)
        assert stream.status == 401, (given, stream.response.text)
        stream.close()

    answer = inbox(live_app, subscription, user_hash=right)
    assert answer.status_code == 200, answer.content
    assert [item["id"] for item in answer.json()["results"]] == [message_id]
    stream = open_stream(asgi_server, live_app, subscription, user_hash=right)
    stream.close()
    # The server key acts for the application, not for a user: no hash needed.
    assert (
        api(live_app.server_key).get("/api/v1/inbox", {"subscription_id": subscription}).status_code
        == 200
    )
