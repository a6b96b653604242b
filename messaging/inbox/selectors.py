"""Reads of an inbox: its items by state (newest first, each state through its own index) and
its counts (one row of InboxCount, never a scan of the items)."""

from __future__ import annotations

from django.db.models import QuerySet

from core.exceptions import NotFound

from ..models import InboxCount, InboxItem, Subscription

UNREAD, READ, ARCHIVED, ALL = "unread", "read", "archived", "all"
STATES = (UNREAD, READ, ARCHIVED, ALL)

# `all` is the inbox as shown: every item not archived (what InboxCount.total counts).
_STATE_FILTERS = {
    UNREAD: {"read_at__isnull": True, "archived_at__isnull": True},
    READ: {"read_at__isnull": False, "archived_at__isnull": True},
    ARCHIVED: {"archived_at__isnull": False},
    ALL: {"archived_at__isnull": True},
}


def inbox_item_list(*, subscription: Subscription, state: str = ALL) -> QuerySet[InboxItem]:
    """The inbox's items in `state`, for the cursor pagination (newest first)."""
    return InboxItem.objects.filter(subscription_id=subscription.pk, **_STATE_FILTERS[state])


def inbox_item_get(*, subscription: Subscription, item_id) -> InboxItem:
    """One item of this inbox; NotFound for any other (another inbox's included)."""
    item = InboxItem.objects.filter(subscription_id=subscription.pk, message_id=item_id).first()
    if item is None:
        raise NotFound("No such item in this inbox.")
    return item


def inbox_count_get(*, subscription: Subscription) -> tuple[int, int]:
    """(unread, total) of the inbox: one row by primary key; (0, 0) before its first item."""
    row = (
        InboxCount.objects.filter(subscription_id=subscription.pk)
        .values_list("unread", "total")
        .first()
    )
    return row or (0, 0)
