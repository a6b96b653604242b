"""The inbox endpoints: list by state with cursor pagination, counts, read, unread, archive,
read-all, for client and server keys; another inbox's or application's items are 404."""

from __future__ import annotations

import uuid

import pytest

from messaging import delivery
from messaging.models import Message, MessageStatus
from messaging.services.messages import Content, Delivery, message_send
from tests.conftest import api_client, subscription_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/inbox"
ITEM_KEYS = {"id", "title", "body", "data", "in_app", "created_at", "read_at", "archived_at"}


def inbox(app, device="device-1", **kw):
    return subscription_create(app.application, type="InAppMessage", token=device, **kw)


def delivered(app, subscription, n=1, **parts):
    messages = []
    for i in range(n):  # one batch each: items of distinct created_at, newest last
        [message] = message_send(
            application=app.application,
            subscriptions=[subscription],
            content=Content(title=f"t{i}", body="b", data={"i": str(i)}, parts=parts),
            delivery=Delivery(),
        ).messages
        delivery.deliver_batch([str(message.pk)])
        messages.append(message)
    return messages


def q(subscription, **more):
    return {"subscription_id": str(subscription.pk), **more}


def test_the_list_is_newest_first_paginated_and_by_state(app, client_api):
    subscription = inbox(app)
    messages = delivered(app, subscription, 5, in_app={"action_url": "https://example.com/x"})

    first = client_api.get(URL, q(subscription, limit=2))
    assert first.status_code == 200, first.content
    body = first.json()
    assert set(body) == {"results", "next"}
    assert [i["id"] for i in body["results"]] == [str(messages[4].pk), str(messages[3].pk)]
    assert set(body["results"][0]) == ITEM_KEYS
    assert body["results"][0]["in_app"] == {"action_url": "https://example.com/x"}
    assert body["results"][0]["read_at"] is None and body["results"][0]["data"] == {"i": "4"}
    seen = [i["id"] for i in body["results"]]
    url = body["next"]
    while url:
        page = client_api.get(url).json()
        seen += [i["id"] for i in page["results"]]
        url = page["next"]
    assert seen == [str(m.pk) for m in reversed(messages)]

    client_api.post(f"{URL}/{messages[0].pk}/read?subscription_id={subscription.pk}")
    client_api.post(f"{URL}/{messages[1].pk}/archive?subscription_id={subscription.pk}")

    def ids(state):
        page = client_api.get(URL, q(subscription, state=state)).json()
        return [i["id"] for i in page["results"]]

    assert ids("unread") == [str(messages[i].pk) for i in (4, 3, 2)]
    assert ids("read") == [str(messages[0].pk)]
    assert ids("archived") == [str(messages[1].pk)]
    assert ids("all") == [str(messages[i].pk) for i in (4, 3, 2, 0)]
    assert client_api.get(f"{URL}/count", q(subscription)).json() == {"unread": 3, "total": 4}


def test_read_unread_archive_and_read_all(app, server_api, client_api):
    subscription = inbox(app)
    a, b, c = delivered(app, subscription, 3)
    assert server_api.get(f"{URL}/count", q(subscription)).json() == {"unread": 3, "total": 3}

    read = client_api.post(f"{URL}/{a.pk}/read?subscription_id={subscription.pk}")
    assert read.status_code == 200, read.content
    assert read.json()["id"] == str(a.pk) and read.json()["read_at"] is not None
    assert Message.objects.get(pk=a.pk).status == MessageStatus.RECEIVED
    again = client_api.post(f"{URL}/{a.pk}/read?subscription_id={subscription.pk}")
    assert again.json()["read_at"] == read.json()["read_at"]
    assert client_api.get(f"{URL}/count", q(subscription)).json() == {"unread": 2, "total": 3}

    unread = client_api.post(f"{URL}/{a.pk}/unread?subscription_id={subscription.pk}")
    assert unread.status_code == 200 and unread.json()["read_at"] is None
    archived = client_api.post(f"{URL}/{b.pk}/archive?subscription_id={subscription.pk}")
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert client_api.get(f"{URL}/count", q(subscription)).json() == {"unread": 2, "total": 2}

    everything = client_api.post(f"{URL}/read-all?subscription_id={subscription.pk}")
    assert everything.status_code == 200 and everything.json() == {"unread": 0, "total": 2}
    assert Message.objects.get(pk=c.pk).status == MessageStatus.RECEIVED
    assert Message.objects.get(pk=b.pk).status == MessageStatus.SUCCESSFUL  # archived unread

    # A click is still reported the usual way.
    converted = client_api.put(
        f"/api/v1/messages/{c.pk}/status", {"status": "converted"}, format="json"
    )
    assert converted.status_code == 200, converted.content
    assert Message.objects.get(pk=c.pk).status == MessageStatus.CONVERTED


def test_items_of_another_inbox_or_application_are_not_found(app, other_app, client_api):
    mine, other = inbox(app, "d-1"), inbox(app, "d-2")
    [item] = delivered(app, other)
    foreign = inbox(other_app, "d-1")
    [foreign_item] = delivered(other_app, foreign)

    for path in ("read", "unread", "archive"):
        response = client_api.post(f"{URL}/{item.pk}/{path}?subscription_id={mine.pk}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client_api.get(URL, q(foreign)).status_code == 404
    assert client_api.get(f"{URL}/count", q(foreign)).status_code == 404
    assert client_api.post(f"{URL}/read-all?subscription_id={foreign.pk}").status_code == 404
    response = client_api.post(f"{URL}/{foreign_item.pk}/read?subscription_id={mine.pk}")
    assert response.status_code == 404
    assert client_api.get(URL, q(mine)).json()["results"] == []


def test_the_subscription_id_is_required_known_and_an_inbox(app, client_api):
    push = subscription_create(app.application)
    for response in (client_api.get(URL), client_api.get(f"{URL}/count")):
        assert response.status_code == 400
        assert "subscription_id" in response.json()["error"]["details"]
    bad = client_api.get(URL, {"subscription_id": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    assert client_api.get(URL, {"subscription_id": str(uuid.uuid4())}).status_code == 404
    assert client_api.get(URL, q(push)).status_code == 404
    assert client_api.get(URL, q(inbox(app), state="new")).status_code == 400
    assert client_api.get(URL, q(inbox(app, "d-9"), extra="1")).status_code == 400


def test_no_key_is_401(app, anonymous_api):
    subscription = inbox(app)
    assert anonymous_api.get(URL, q(subscription)).status_code == 401
    assert api_client("ck_unknown").get(f"{URL}/count", q(subscription)).status_code == 401
