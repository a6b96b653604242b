"""Reads of messages."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from accounts.models import Application
from core.exceptions import NotFound

from ..models import Message, MessageEvent


def message_get(*, application: Application, message_id, with_events: bool = False) -> Message:
    """One of the application's messages; another application's is simply not found."""
    qs = Message.objects.filter(application=application, pk=message_id).select_related(
        "template_version"
    )
    if with_events:
        qs = qs.prefetch_related(Prefetch("events", MessageEvent.objects.order_by("at", "id")))
    message = qs.first()
    if message is None:
        raise NotFound("No such message.")
    return message


def message_list(*, application: Application, filters: dict) -> QuerySet[Message]:
    qs = Message.objects.filter(application=application).select_related("template_version")
    for name in ("status", "campaign_id", "subscription_id", "channel"):
        if name in filters:
            qs = qs.filter(**{name: filters[name]})
    return qs
