"""The links the service hands out with its messages, under PUBLIC_URL: the one-click
unsubscribe URL of a bulk e-mail (RFC 8058) and the status callback of an SMS. Which links a
channel's messages get is its spec's `links` (core.channels).

An e-mail of a category that recipients may turn off (not `required`) gets the one-click link
of that category on that channel (messaging.preference_links: the preference page turns it
off); any other campaign e-mail the link that disables its subscription (`/unsubscribe/`,
below); a one-off e-mail without such a category none.

An unsubscribe link names its subscription, signed with SECRET_KEY (django.core.signing), so
that it works for as long as the subscription exists and cannot be made for another one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse

from core import channels

from .preference_links import one_click_url, preference_token

_UNSUBSCRIBE_SALT = "signal.unsubscribe"


def unsubscribe_token(subscription_id) -> str:
    """The signed part of a subscription's unsubscribe URL."""
    return signing.Signer(salt=_UNSUBSCRIBE_SALT).sign(str(subscription_id))


def unsubscribe_subscription_id(token: str) -> str | None:
    """The subscription id an unsubscribe token names, or None if it was not made here."""
    try:
        return signing.Signer(salt=_UNSUBSCRIBE_SALT).unsign(token)
    except signing.BadSignature:
        return None


def unsubscribe_url(subscription_id) -> str:
    return settings.PUBLIC_URL + reverse(
        "unsubscribe", kwargs={"token": unsubscribe_token(subscription_id)}
    )


def sms_status_callback_url(message_id) -> str:
    return settings.PUBLIC_URL + reverse("sms-status-callback", kwargs={"message_id": message_id})


def _unsubscribe_url(message: Any, optional_categories: Collection[str]) -> dict[str, Any]:
    """`message` is a claimed one (delivery.claim.Outgoing: its category, and its
    subscription's user)."""
    category = message.category
    if category and category in optional_categories:
        token = preference_token(
            application_id=message.application_id,
            user_id=message.user_id,
            subscription_id=message.subscription_id,
            category=category,
            channel=message.channel,
        )
        return {"unsubscribe_url": one_click_url(token)}
    # Other campaign messages are bulk mail too: their link disables the subscription.
    if message.campaign_run_id is None:
        return {}
    return {"unsubscribe_url": unsubscribe_url(message.subscription_id)}


def _status_callback(message: Any, _optional_categories: Collection[str]) -> dict[str, Any]:
    return {"status_callback": sms_status_callback_url(message.id)}


# Each link a spec may name, and what adds it to a claimed message's OutboundMessage fields
# (given the keys of its application's categories that recipients may turn off).
LINKS: dict[str, Callable[[Any, Collection[str]], dict[str, Any]]] = {
    "unsubscribe_url": _unsubscribe_url,
    "status_callback": _status_callback,
}


def links_for(
    channel: str, *, optional_categories: Collection[str] = frozenset()
) -> Callable[[Any], dict[str, Any]] | None:
    """What adds a claimed message's links to its OutboundMessage fields, for a channel that
    has links (its spec's `links`) and a service that has a PUBLIC_URL; else None.
    `optional_categories`: the keys of the application's categories that are not required,
    whose e-mails link to the preference page (the pipeline reads them with the application's
    credentials, delivery.send)."""
    spec = channels.SPECS.get(channel)
    if not settings.PUBLIC_URL or spec is None or not spec.links:
        return None
    adders = [LINKS[name] for name in spec.links]
    return lambda message: {
        key: value for add in adders for key, value in add(message, optional_categories).items()
    }
