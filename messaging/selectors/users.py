"""Reads of users."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Application

from ..models import InboxItem, Message, MessageEvent, Subscription, SubscriptionEvent, User


def user_get(*, application: Application, external_user_id: str) -> User:
    try:
        return User.objects.get(application=application, external_user_id=external_user_id)
    except User.DoesNotExist as exc:
        raise Http404("No such user.") from exc


def user_subscription_list(*, user: User) -> QuerySet[Subscription]:
    return Subscription.objects.filter(user=user).select_related("user")


def users_data_counts(*, user_ids) -> dict[str, int]:
    """How many rows of each kind an erasure of these users deletes (what the admin's
    confirmation page lists)."""
    subscriptions = Subscription.objects.filter(user_id__in=user_ids).values("pk")
    messages = Message.objects.filter(subscription_id__in=subscriptions)
    return {
        "users": User.objects.filter(pk__in=user_ids).count(),
        "subscriptions": subscriptions.count(),
        "subscription_events": SubscriptionEvent.objects.filter(
            subscription_id__in=subscriptions
        ).count(),
        "messages": messages.count(),
        "message_events": MessageEvent.objects.filter(message_id__in=messages.values("pk")).count(),
        "inbox_items": InboxItem.objects.filter(subscription_id__in=subscriptions).count(),
    }
