"""Reads of applications, keys, users and subscriptions."""

from __future__ import annotations

import hashlib

from django.db.models import QuerySet
from django.http import Http404

from .models import ApiKey, Application, Subscription, User


def api_key_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_get_active(*, raw: str) -> ApiKey | None:
    """The unrevoked key whose secret is `raw`, with its application, or None."""
    # The application's encrypted credentials are deferred: requests don't need them, and
    # decrypting them on every request would.
    try:
        return (
            ApiKey.objects.select_related("application")
            .defer("application__apns_credentials", "application__fcm_credentials")
            .get(digest=api_key_digest(raw), revoked_at__isnull=True)
        )
    except ApiKey.DoesNotExist:
        return None


def subscription_get(*, application: Application, subscription_id) -> Subscription:
    """One of the application's subscriptions; another application's is simply not found."""
    try:
        return Subscription.objects.select_related("user").get(
            application=application, pk=subscription_id
        )
    except (Subscription.DoesNotExist, ValueError) as exc:
        raise Http404("No such subscription.") from exc


def user_get(*, application: Application, external_user_id: str) -> User:
    try:
        return User.objects.get(application=application, external_user_id=external_user_id)
    except User.DoesNotExist as exc:
        raise Http404("No such user.") from exc


def user_subscription_list(*, user: User) -> QuerySet[Subscription]:
    return Subscription.objects.filter(user=user).select_related("user")


def subscription_list(*, application: Application, filters: dict) -> QuerySet[Subscription]:
    qs = Subscription.objects.filter(application=application).select_related("user")
    for name in ("type", "enabled", "country", "language"):
        if name in filters:
            qs = qs.filter(**{name: filters[name]})
    return qs
