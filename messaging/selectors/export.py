"""Everything stored about one user, as one JSON document written in chunks of text: the user
(with its tags and preferences), its subscriptions (every field: tokens decrypted, their own
preferences, with their events and inbox counts), and their messages (with their events and
inbox items), read a page of messages at a time so that a user with many messages is never
held in memory at once.

    {"user": {...}, "subscriptions": [{..., "events": [...], "inbox_count": {...}}],
     "messages": [{..., "events": [...], "inbox_item": {...} | null}]}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, Q

from ..models import (
    InboxCount,
    InboxItem,
    Message,
    MessageEvent,
    Subscription,
    SubscriptionEvent,
    User,
)

PAGE = 1000  # messages read per query

# Columns left out: the application (the export is the application's own), the token's
# digest (derived from the token, which is given) and the keys that only link rows that the
# document nests anyway.
_USER = ["id", "external_user_id", "tags", "preferences", "created_at"]


def _columns(model: type[Model], leave_out: Iterable[str]) -> list[str]:
    skipped = set(leave_out)
    return [f.attname for f in model._meta.concrete_fields if f.attname not in skipped]


_SUBSCRIPTION = _columns(Subscription, ["application_id", "user_id", "token_digest"])
_SUBSCRIPTION_EVENT = _columns(SubscriptionEvent, ["subscription_id"])
_INBOX_COUNT = ["unread", "total"]
_MESSAGE = _columns(Message, ["application_id"])
_MESSAGE_EVENT = _columns(MessageEvent, ["message_id"])
_INBOX_ITEM = _columns(InboxItem, ["message_id", "application_id", "subscription_id"])

_ENCODER = DjangoJSONEncoder(ensure_ascii=False)


def user_export_chunks(*, user: User) -> Iterator[str]:
    """The user's export document, in pieces of JSON text that join into one document."""
    user_row = User.objects.filter(pk=user.pk).values(*_USER).first() or {
        name: getattr(user, name) for name in _USER
    }
    yield '{"user": ' + _ENCODER.encode(user_row) + ', "subscriptions": ['
    subscriptions = list(
        Subscription.objects.filter(user_id=user.pk)
        .order_by("created_at", "pk")
        .values(*_SUBSCRIPTION)
    )
    ids = [row["id"] for row in subscriptions]
    events = _grouped(
        SubscriptionEvent.objects.filter(subscription_id__in=ids).order_by("created_at", "pk"),
        "subscription_id",
        _SUBSCRIPTION_EVENT,
    )
    counts = {
        row.pop("subscription_id"): row
        for row in InboxCount.objects.filter(subscription_id__in=ids).values(
            "subscription_id", *_INBOX_COUNT
        )
    }
    for index, row in enumerate(subscriptions):
        row["events"] = events.get(row["id"], [])
        row["inbox_count"] = counts.get(row["id"])
        yield ("" if index == 0 else ", ") + _ENCODER.encode(row)
    yield '], "messages": ['
    first = True
    for subscription_id in ids:
        for page in _message_pages(subscription_id):  # one chunk a page: one write each
            yield ("" if first else ", ") + ", ".join(_ENCODER.encode(row) for row in page)
            first = False
    yield "]}"


def _message_pages(subscription_id) -> Iterator[list[dict[str, Any]]]:
    """The subscription's messages, newest first, a page at a time (the (subscription,
    -created_at) index, resumed after the last row read), each with its events and inbox
    item."""
    after: Q | None = None
    while True:
        messages = Message.objects.filter(subscription_id=subscription_id)
        if after is not None:
            messages = messages.filter(after)
        page = list(messages.order_by("-created_at", "-pk").values(*_MESSAGE)[:PAGE])
        if not page:
            return
        ids = [row["id"] for row in page]
        events = _grouped(
            MessageEvent.objects.filter(message_id__in=ids).order_by("at", "pk"),
            "message_id",
            _MESSAGE_EVENT,
        )
        items = {
            row.pop("message_id"): row
            for row in InboxItem.objects.filter(message_id__in=ids).values(
                "message_id", *_INBOX_ITEM
            )
        }
        for row in page:
            row["events"] = events.get(row["id"], [])
            row["inbox_item"] = items.get(row["id"])
        yield page
        if len(page) < PAGE:
            return
        last = page[-1]
        # `created_at <=` bounds the index range; the rows of that very instant already
        # read are left out by a filter on the few rows that share it.
        after = Q(created_at__lte=last["created_at"]) & ~Q(
            created_at=last["created_at"], pk__gte=last["id"]
        )


def _grouped(queryset, key: str, columns: list[str]) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in queryset.values(key, *columns):
        grouped[row.pop(key)].append(row)
    return grouped
