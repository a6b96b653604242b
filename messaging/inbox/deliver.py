"""Delivery to inboxes: a batch's in-app messages written as items, with their inboxes'
counts moved, in the transaction that records them `successful`: one bulk insert of the
items (COPY for a campaign's batch) and one INSERT ... ON CONFLICT DO UPDATE for the counts,
whatever the number of messages and inboxes. The events follow the commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from django.db import connection, transaction

from core.bulk import copy_rows, uuid_array

from ..models import InboxCount, InboxItem
from . import events
from .shape import count_json, iso

ITEM_COLUMNS = (
    "message_id", "application_id", "subscription_id", "title", "body", "data", "in_app",
    "created_at", "read_at", "archived_at",
)  # fmt: skip


@lru_cache(maxsize=1)
def _counts_sql() -> str:
    table = InboxCount._meta.db_table
    return f"""
INSERT INTO {table} AS c (subscription_id, unread, total)
SELECT * FROM unnest(%(ids)s::uuid[], %(added)s::int[], %(added)s::int[])
ON CONFLICT (subscription_id) DO UPDATE
SET unread = c.unread + EXCLUDED.unread, total = c.total + EXCLUDED.total
RETURNING subscription_id, unread, total
"""  # noqa: S608 (names are ours)


def counts_add(added: Counter) -> dict:
    """Adds `added[subscription_id]` unread items to each inbox's counts in one statement;
    returns each inbox's new (unread, total). Inboxes are taken in id order, so two batches
    moving the same inboxes wait for each other instead of deadlocking."""
    if not added:
        return {}
    ordered = sorted(added, key=str)
    if connection.vendor != "postgresql":
        found = {}
        for subscription_id in ordered:
            count, _ = InboxCount.objects.select_for_update().get_or_create(
                subscription_id=subscription_id
            )
            count.unread += added[subscription_id]
            count.total += added[subscription_id]
            count.save()
            found[subscription_id] = (count.unread, count.total)
        return found
    with connection.cursor() as cursor:
        cursor.execute(
            _counts_sql(),
            {"ids": uuid_array(ordered), "added": [added[s] for s in ordered]},
        )
        return {sid: (unread, total) for sid, unread, total in cursor.fetchall()}


def inbox_items_write(messages: Sequence, now: datetime) -> None:
    """Writes `messages` (delivery.claim.Outgoing rows, or anything with their attributes)
    as unread items of their inboxes and moves the counts; publishes a `message` event per
    item and a `count` event per inbox once the transaction commits."""
    if not messages:
        return
    rows = [
        (m.id, m.application_id, m.subscription_id, m.title, m.body, m.data, m.parts or {},
         now, None, None)
        for m in messages
    ]  # fmt: skip
    copy_rows(InboxItem, ITEM_COLUMNS, rows)
    counts = counts_add(Counter(m.subscription_id for m in messages))
    created_at = iso(now)
    published = [
        events.InboxEvent(
            str(m.subscription_id),
            events.MESSAGE,
            # item_json of the row just written, without a model instance per item
            {"id": str(m.id), "title": m.title, "body": m.body, "data": m.data,
             "in_app": m.parts or {}, "created_at": created_at, "read_at": None,
             "archived_at": None},
        )
        for m in messages
    ]  # fmt: skip
    published += [
        events.InboxEvent(str(sid), events.COUNT, count_json(*counts[sid])) for sid in counts
    ]
    transaction.on_commit(lambda: events.publish(published))
