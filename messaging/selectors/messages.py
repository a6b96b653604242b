"""Reads of messages."""

from __future__ import annotations

from django.db import connection
from django.db.models import Prefetch, QuerySet

from accounts.models import Application
from core.exceptions import NotFound

from ..models import FallbackChain, Message, MessageEvent


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


def message_fallback_next(*, message: Message):
    """The id of the first message of the hop that followed `message`'s in its fallback
    chain (services.fallback), or None: found through the chain's hops (their GIN index) on
    PostgreSQL, else by the messages' `fallback_of`."""
    if connection.vendor != "postgresql":
        return (
            Message.objects.filter(fallback_of=message.pk)
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
    pk = str(message.pk)
    hops = (
        FallbackChain.objects.filter(hops__contains=[{"messages": [pk]}])
        .values_list("hops", flat=True)
        .first()
    )
    later = False
    for hop in hops or ():
        if later and hop["messages"]:
            return hop["messages"][0]
        later = later or pk in hop["messages"]
    return None
