"""Writes of the preference page and of the one-click unsubscribe: changes to a recipient's
preferences (User.preferences, or Subscription.preferences without a user), in the stored
shape messaging.rules reads:
{"channels": {TYPE: bool}, "categories": {KEY: {"enabled": bool, "channels": {TYPE: bool}}},
 "quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Asia/Seoul"}},
unset entries left out. A change names entries to set, and None for those to remove."""

from __future__ import annotations

import copy
from typing import Any

from django.db import transaction

from accounts.models import Application

from ..models import Subscription, User
from ..selectors.preference_page import Recipient


def preferences_save(*, recipient: Recipient, changes: dict[str, Any]) -> dict:
    """Merges `changes` into the recipient's stored preferences, holding its row's lock so
    that two saves at once do not lose one another's entries; returns what is stored."""
    model, pk = (
        (User, recipient.user.pk) if recipient.user else (Subscription, recipient.subscription.pk)
    )
    with transaction.atomic():
        row = model.objects.select_for_update().only("pk", "preferences").filter(pk=pk).first()
        if row is None:  # erased meanwhile: nothing to keep
            return {}
        merged = _preferences_merge(
            current=row.preferences or {}, changes=changes, application=recipient.application
        )
        if merged != row.preferences:
            row.preferences = merged
            row.save(update_fields=["preferences"])
    return merged


def category_unsubscribe(*, recipient: Recipient, category: str, channel: str) -> dict:
    """The one-click unsubscribe: turns `category` off on `channel` (the whole category
    when ""). Idempotent."""
    change = {"channels": {channel: False}} if channel else {"enabled": False}
    return preferences_save(recipient=recipient, changes={"categories": {category: change}})


# Stands in for messaging.services.preferences.preferences_merge, the merge of
# PUT /users/{id}/preferences: the same keyword arguments and the same stored shape, so that
# preferences_save calls that one in its place once it exists (and this function goes).
# The page builds only valid changes, so this one does not check them.
def _preferences_merge(
    *,
    current: dict,
    changes: dict[str, Any],
    application: Application,  # the shared merge checks category keys against it
) -> dict:
    merged = copy.deepcopy(current)
    if "channels" in changes:
        _merge_flags(merged, "channels", changes["channels"])
    for key, change in (changes.get("categories") or {}).items():
        categories = merged.setdefault("categories", {})
        if change is None:
            categories.pop(key, None)
        else:
            entry = categories.setdefault(key, {})
            if "enabled" in change:
                _put(entry, "enabled", change["enabled"])
            if "channels" in change:
                _merge_flags(entry, "channels", change["channels"])
            if not entry:
                del categories[key]
        if not categories:
            del merged["categories"]
    if "quiet_hours" in changes:
        _put(merged, "quiet_hours", changes["quiet_hours"])
    return merged


def _merge_flags(target: dict, name: str, flags: dict | None) -> None:
    if flags is None:
        target.pop(name, None)
        return
    entries = target.setdefault(name, {})
    for key, value in flags.items():
        _put(entries, key, value)
    if not entries:
        del target[name]


def _put(target: dict, key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value
