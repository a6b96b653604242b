"""Writes of an inbox: read, unread, archive, read-all. Each changes only items whose state
it changes (so repeating it changes nothing), moves InboxCount in the same transaction by
what it changed, and publishes a `count` event after commit when the count moved. Reading
moves the message to `received`."""

from __future__ import annotations

from collections import Counter

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.exceptions import NotFound

from ..models import InboxCount, InboxItem, Message, MessageEvent, MessageStatus, Subscription
from ..services.messages import message_report_status
from ..signals import message_statuses_changed
from . import events
from .selectors import inbox_count_get
from .shape import count_json


def _count_move(subscription: Subscription, *, unread: int = 0, total: int = 0) -> None:
    """Moves the inbox's counts and announces the new ones after commit."""
    if not unread and not total:
        return
    InboxCount.objects.filter(subscription_id=subscription.pk).update(
        unread=F("unread") + unread, total=F("total") + total
    )
    counts = inbox_count_get(subscription=subscription)
    event = events.InboxEvent(str(subscription.pk), events.COUNT, count_json(*counts))
    transaction.on_commit(lambda: events.publish([event]))


def _locked(subscription: Subscription, item_id) -> InboxItem:
    """The inbox's item, locked until the transaction ends; NotFound for any other."""
    item = (
        InboxItem.objects.select_for_update()
        .filter(subscription_id=subscription.pk, message_id=item_id)
        .first()
    )
    if item is None:
        raise NotFound("No such item in this inbox.")
    return item


def inbox_item_read(*, subscription: Subscription, item_id, actor: str) -> InboxItem:
    """Marks the item read (an archived item keeps its archive) and its message `received`
    (unless already received or converted)."""
    with transaction.atomic():
        item = _locked(subscription, item_id)
        if item.read_at is None:
            item.read_at = timezone.now()
            item.save(update_fields=["read_at"])
            if item.archived_at is None:
                _count_move(subscription, unread=-1)
        message = Message.objects.only("status").get(pk=item.message_id)
        if message.status == MessageStatus.SUCCESSFUL:
            message_report_status(message=message, status=MessageStatus.RECEIVED, actor=actor)
    return item


def inbox_item_unread(*, subscription: Subscription, item_id) -> InboxItem:
    """Marks the item unread again (its message stays `received`)."""
    with transaction.atomic():
        item = _locked(subscription, item_id)
        if item.read_at is not None:
            item.read_at = None
            item.save(update_fields=["read_at"])
            if item.archived_at is None:
                _count_move(subscription, unread=1)
    return item


def inbox_item_archive(*, subscription: Subscription, item_id) -> InboxItem:
    """Archives the item: it leaves the inbox's `all` and its counts."""
    with transaction.atomic():
        item = _locked(subscription, item_id)
        if item.archived_at is None:
            item.archived_at = timezone.now()
            item.save(update_fields=["archived_at"])
            _count_move(subscription, unread=-1 if item.read_at is None else 0, total=-1)
    return item


def inbox_read_all(*, subscription: Subscription, actor: str) -> tuple[int, int]:
    """Marks every unread item of the inbox read (archived ones excepted) and their messages
    `received`, set-based; returns the new (unread, total)."""
    with transaction.atomic():
        now = timezone.now()
        unread = InboxItem.objects.filter(
            subscription_id=subscription.pk, read_at__isnull=True, archived_at__isnull=True
        )
        ids = list(unread.select_for_update().values_list("message_id", flat=True))
        if ids:
            InboxItem.objects.filter(pk__in=ids).update(read_at=now)
            _count_move(subscription, unread=-len(ids))
            _messages_receive(ids, actor=actor, now=now)
        return inbox_count_get(subscription=subscription)


def _messages_receive(ids: list, *, actor: str, now) -> None:
    """message_report_status(received) for many messages at once: those still `successful`
    move, with their status events and campaign counters."""
    successful = Message.objects.filter(pk__in=ids, status=MessageStatus.SUCCESSFUL)
    moved = list(successful.select_for_update().values_list("pk", "campaign_run_id"))
    if not moved:
        return
    Message.objects.filter(pk__in=[pk for pk, _ in moved]).update(status=MessageStatus.RECEIVED)
    MessageEvent.objects.bulk_create(
        MessageEvent(
            message_id=pk, type=MessageEvent.Type.STATUS, status=MessageStatus.RECEIVED, at=now,
            details={"actor": actor},
        )
        for pk, _ in moved
    )  # fmt: skip
    transitions = Counter(
        (run, MessageStatus.SUCCESSFUL, MessageStatus.RECEIVED) for _, run in moved if run
    )
    if transitions:
        message_statuses_changed.send(sender=Message, transitions=transitions)
