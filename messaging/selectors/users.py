"""Reads of users."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Application

from ..models import Subscription, User


def user_get(*, application: Application, external_user_id: str) -> User:
    try:
        return User.objects.get(application=application, external_user_id=external_user_id)
    except User.DoesNotExist as exc:
        raise Http404("No such user.") from exc


def user_subscription_list(*, user: User) -> QuerySet[Subscription]:
    return Subscription.objects.filter(user=user).select_related("user")
