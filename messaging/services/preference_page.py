"""Writes of the preference page and of the one-click unsubscribe: changes to a recipient's
preferences (User.preferences, or Subscription.preferences without a user), in the stored
shape messaging.rules reads:
{"channels": {TYPE: bool}, "categories": {KEY: {"enabled": bool, "channels": {TYPE: bool}}},
 "quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Asia/Seoul"}},
unset entries left out. A change names entries to set, and None for those to remove."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.exceptions import ValidationFailed

from ..models import Subscription, User
from ..selectors.preference_page import Recipient
from .preferences import preferences_merge


def preferences_save(*, recipient: Recipient, changes: dict[str, Any]) -> dict:
    """Merges `changes` into the recipient's stored preferences (preferences_merge, as PUT
    /users/{id}/preferences does), holding its row's lock so that two saves at once do not
    lose one another's entries; returns what is stored."""
    model, pk = (
        (User, recipient.user.pk) if recipient.user else (Subscription, recipient.subscription.pk)
    )
    with transaction.atomic():
        row = model.objects.select_for_update().only("pk", "preferences").filter(pk=pk).first()
        if row is None:  # erased meanwhile: nothing to keep
            return {}
        try:
            merged = preferences_merge(
                current=row.preferences or {}, changes=changes, application=recipient.application
            )
        except ValidationFailed:
            # The page offers only the application's categories; one deleted since it was
            # shown (or since its e-mail was sent) can no longer be sent in, so nothing is
            # kept for it.
            return row.preferences or {}
        if merged != row.preferences:
            row.preferences = merged
            row.save(update_fields=["preferences"])
    return merged


def category_unsubscribe(*, recipient: Recipient, category: str, channel: str) -> dict:
    """The one-click unsubscribe: turns `category` off on `channel` (the whole category
    when ""). Idempotent."""
    change = {"channels": {channel: False}} if channel else {"enabled": False}
    return preferences_save(recipient=recipient, changes={"categories": {category: change}})
