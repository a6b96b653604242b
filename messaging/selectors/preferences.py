"""Reads of preferences (the shape is in messaging.services.preferences)."""

from __future__ import annotations

from accounts.models import Application

from ..models import Subscription
from .users import user_get


def user_preferences_get(*, application: Application, external_user_id: str) -> dict:
    """The preferences of the application's user with this external id, as stored (unset
    entries left out); Http404 when the application has no such user."""
    return user_get(application=application, external_user_id=external_user_id).preferences


def subscription_preferences_get(*, subscription: Subscription) -> dict:
    """The preferences a subscription's messages follow: its user's when it has one, else its
    own (messaging.rules reads them the same way)."""
    if subscription.user_id is not None:
        return subscription.user.preferences
    return subscription.preferences
