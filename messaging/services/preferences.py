"""A recipient's preferences: what a user (or a subscription that belongs to no user) chose to
get, which messaging.rules keeps to. Checked and merged here, once, for the API, the admin and
the preference page:

    {"channels": {TYPE: bool},
     "categories": {KEY: {"enabled": bool, "channels": {TYPE: bool}}},
     "quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Asia/Seoul"}}

Unset entries are left out of what is stored. Changes have the same shape and merge into it
part by part and entry by entry (a category's `channels` too); `null` removes what it names
(an entry, a part, or `quiet_hours` as a whole). TYPE is a channel type (core.channels.SPECS);
KEY one of the application's categories (removing an entry of a deleted one is allowed); a
time is "HH:MM" on a 24-hour clock; `timezone` an IANA zone (without one, the subscription's,
else UTC).

Preferences belong to the user: every subscription it identifies follows them, and one that
logs out follows its own (none, unless set for it)."""

from __future__ import annotations

import copy
import re
import zoneinfo
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import structlog
from django.db import transaction

from accounts.categories import category_key_valid, category_keys_known
from accounts.models import Application
from core.channels import CHANNELS
from core.exceptions import NotFound, ValidationFailed

from ..models import Subscription, User
from .users import user_get_or_create

PARTS = ("channels", "categories", "quiet_hours")
CATEGORY_FIELDS = ("enabled", "channels")
QUIET_HOURS_FIELDS = ("start", "end", "timezone")
CLOCK_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"

_CLOCK = re.compile(CLOCK_PATTERN)
_BOOLEAN = "Must be true, false or null."
_CLOCK_INVALID = 'A time "HH:MM" on a 24-hour clock, e.g. "22:00".'

logger = structlog.get_logger(__name__)


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    """The IANA time zone names of this system (what the OpenAPI document lists)."""
    return frozenset(zoneinfo.available_timezones())


def _shown(value: Any) -> str:
    """A key from outside as a message may quote it: ASCII, at most 40 characters."""
    text = ascii(value)
    return text if len(text) <= 40 else text[:39] + "…"


class _Errors(dict):
    """field path -> messages, as the API's validation_error details give them."""

    def add(self, path: str, message: str) -> None:
        self.setdefault(path, []).append(message)


def _channels_merge(current: dict, changes: Any, path: str, errors: _Errors) -> dict:
    """`current` {TYPE: bool} with `changes` merged in."""
    if not isinstance(changes, Mapping):
        errors.add(path, "An object: channel type -> true, false or null.")
        return current
    merged = dict(current)
    for channel, value in changes.items():
        if channel not in CHANNELS:
            errors.add(path, f"{_shown(channel)} is not a channel type ({', '.join(CHANNELS)}).")
        elif value is None:
            merged.pop(channel, None)
        elif isinstance(value, bool):
            merged[channel] = value
        else:
            errors.add(f"{path}.{channel}", _BOOLEAN)
    return merged


def _sets_something(value: Any) -> bool:
    """Whether a change sets a value somewhere (rather than only removing entries)."""
    if isinstance(value, Mapping):
        return any(_sets_something(item) for item in value.values())
    return value is not None


def _category_merge(current: dict, changes: Any, path: str, errors: _Errors) -> dict:
    """One category entry {"enabled", "channels"} with `changes` merged in."""
    if not isinstance(changes, Mapping):
        errors.add(path, 'An object {"enabled": bool, "channels": {...}} or null.')
        return current
    merged = dict(current)
    for name, value in changes.items():
        if name not in CATEGORY_FIELDS:
            errors.add(f"{path}.{_field_name(name)}", "Unknown field.")
        elif value is None:
            merged.pop(name, None)
        elif name == "enabled":
            if isinstance(value, bool):
                merged[name] = value
            else:
                errors.add(f"{path}.enabled", _BOOLEAN)
        else:
            merged[name] = _channels_merge(merged.get(name, {}), value, f"{path}.channels", errors)
            if not merged[name]:
                del merged[name]
    return merged


def _field_name(name: Any) -> str:
    return name if isinstance(name, str) and name.isascii() and name.isprintable() else "?"


def _categories_merge(
    current: dict, changes: Any, application: Application, errors: _Errors
) -> dict:
    if not isinstance(changes, Mapping):
        errors.add("categories", "An object: category key -> its entry or null.")
        return current
    wanted = [key for key, entry in changes.items() if _sets_something(entry)]
    known = category_keys_known(application=application, keys=wanted)
    merged = dict(current)
    for key, entry in changes.items():
        if not category_key_valid(key):
            errors.add("categories", f"{_shown(key)} is not a category key.")
        elif key in wanted and key not in known:
            errors.add(
                f"categories.{key}",
                f"No category {key!r} in this application; create it with POST /categories.",
            )
        elif entry is None:
            merged.pop(key, None)
        else:
            merged[key] = _category_merge(merged.get(key, {}), entry, f"categories.{key}", errors)
            if not merged[key]:
                del merged[key]
    return merged


def _quiet_hours_merge(current: dict, changes: Any, errors: _Errors) -> dict:
    if not isinstance(changes, Mapping):
        errors.add("quiet_hours", 'An object {"start", "end", "timezone"} or null.')
        return current
    merged = dict(current)
    for name, value in changes.items():
        if name not in QUIET_HOURS_FIELDS:
            errors.add(f"quiet_hours.{_field_name(name)}", "Unknown field.")
        elif value is None:
            merged.pop(name, None)
        elif name == "timezone":
            if isinstance(value, str) and value in time_zones():
                merged[name] = value
            else:
                errors.add(
                    "quiet_hours.timezone",
                    f"{_shown(value)} is not an IANA time zone such as 'Asia/Seoul'.",
                )
        elif isinstance(value, str) and _CLOCK.fullmatch(value):
            merged[name] = value
        else:
            errors.add(f"quiet_hours.{name}", _CLOCK_INVALID)
    if not errors:
        if "start" not in merged or "end" not in merged:
            errors.add("quiet_hours", "Quiet hours need a start and an end.")
        elif merged["start"] == merged["end"]:
            errors.add("quiet_hours", "The start and the end are the same time; null removes them.")
    return merged


def preferences_merge(*, current: dict, changes: dict, application: Application) -> dict:
    """`current` preferences with `changes` merged in (see the module docstring), as stored:
    unset entries left out. ValidationFailed naming every change that breaks a rule, by its
    path (`categories.offers.channels.SMS`); nothing is stored here. `current` is left as it
    is."""
    if not isinstance(changes, Mapping):
        raise ValidationFailed(
            details={"non_field_errors": ["Preferences are a JSON object of their parts."]}
        )
    errors = _Errors()
    merged = {part: copy.deepcopy(current[part]) for part in PARTS if current.get(part)}
    for part, value in changes.items():
        if part not in PARTS:
            errors.add(_field_name(part), "Unknown field.")
        elif value is None:
            merged.pop(part, None)
        elif part == "channels":
            merged[part] = _channels_merge(merged.get(part, {}), value, part, errors)
        elif part == "categories":
            merged[part] = _categories_merge(merged.get(part, {}), value, application, errors)
        else:
            part_errors = _Errors()
            merged[part] = _quiet_hours_merge(merged.get(part, {}), value, part_errors)
            errors.update(part_errors)
    if errors:
        raise ValidationFailed(details=dict(errors))
    return {part: value for part, value in merged.items() if value}


def preferences_changes(*, current: dict, wanted: dict) -> Any:
    """The changes that make `wanted` of `current` under preferences_merge: what differs,
    and null for what `wanted` leaves out. For a form that edits preferences as a whole (the
    admin's); `wanted` is checked when the changes are merged."""
    if not isinstance(current, Mapping) or not isinstance(wanted, Mapping):
        return wanted
    changes: dict[str, Any] = {key: None for key in current if key not in wanted}
    for key, value in wanted.items():
        if key not in current:
            changes[key] = value
        elif current[key] != value:
            changes[key] = preferences_changes(current=current[key], wanted=value)
    return changes


def _changed_parts(before: dict, after: dict) -> list[str]:
    return [part for part in PARTS if before.get(part) != after.get(part)]


def user_preferences_update(
    *, application: Application, external_user_id: str, changes: dict, actor: str
) -> User:
    """Merges `changes` into the preferences of the application's user with this external id
    (preferences_merge), creating the user if new, as PUT /users/{id} does: a backend may set
    them before its app identifies the user. ValidationFailed leaves everything as it was."""
    with transaction.atomic():
        user = None
        while user is None:  # again when an erasure deleted it while this waited for its lock
            found = user_get_or_create(application=application, external_user_id=external_user_id)
            user = User.objects.select_for_update().filter(pk=found.pk).first()
        merged = preferences_merge(
            current=user.preferences, changes=changes, application=application
        )
        if merged != user.preferences:
            parts = _changed_parts(user.preferences, merged)
            user.preferences = merged
            user.save(update_fields=["preferences"])
            logger.info("preferences.changed", user_id=str(user.pk), parts=parts, actor=actor)
    return user


def subscription_preferences_update(
    *, subscription: Subscription, changes: dict, actor: str
) -> Subscription:
    """Merges `changes` into a subscription's own preferences (preferences_merge): those of a
    subscription that belongs to no user, such as an address a backend registered. A
    subscription of a user follows the user's preferences instead (user_preferences_update),
    and its own apply again only once it logs out."""
    with transaction.atomic():
        locked = Subscription.objects.select_for_update().filter(pk=subscription.pk).first()
        if locked is None:
            raise NotFound("No such subscription.")
        merged = preferences_merge(
            current=locked.preferences, changes=changes, application=subscription.application
        )
        if merged != locked.preferences:
            parts = _changed_parts(locked.preferences, merged)
            Subscription.objects.filter(pk=locked.pk).update(preferences=merged)
            logger.info(
                "preferences.changed",
                subscription_id=str(locked.pk),
                parts=parts,
                actor=actor,
            )
        subscription.preferences = merged
    return subscription
