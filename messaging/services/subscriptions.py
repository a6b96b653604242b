"""Writes of subscriptions. Every change records a SubscriptionEvent with its actor."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Application
from core import crypto
from core.validation import InputInvalid

from ..models import Subscription, SubscriptionEvent
from ..subscription_fields import profile_clean, tags_merge
from .users import user_get_or_create

SYSTEM = "system"
# Why a subscription is off: the device or its app asked (the API), the provider said the
# token is dead (the delivery pipeline; registering the token again revives it).
DISABLED_BY_REQUEST = "disabled_by_request"
TOKEN_INVALID = "token_invalid"  # noqa: S105 (a reason, not a secret)

_PROFILE_FIELDS = ("language", "country", "timezone", "device")


def _record(subscription: Subscription, kind: str, actor: str, changes: dict | None = None):
    SubscriptionEvent.objects.create(
        subscription=subscription, kind=kind, actor=actor, changes=changes or {}
    )


def subscription_register(
    *,
    application: Application,
    actor: str,
    type: str,
    token: str,
    external_user_id: str | None = None,
    tags: dict[str, str | None] | None = None,
    keys: dict[str, str] | None = None,
    **profile: Any,
) -> tuple[Subscription, bool]:
    """Registers (type, token) for the application; the same pair again updates and returns
    the existing subscription. `token` must already be normalized; `keys` are a WebPush
    subscription's {"p256dh", "auth"} (a browser that subscribes again may bring new ones).
    Tags and profile fields that break their rules (messaging.subscription_fields) raise
    ValidationFailed naming them. Returns (sub, created)."""
    tags, profile = _checked(tags, profile)
    digest = crypto.token_digest(type, token)
    now = timezone.now()
    try:
        with transaction.atomic():
            subscription = (
                Subscription.objects.select_for_update(of=("self",))
                .select_related("user")
                .filter(application=application, type=type, token_digest=digest)
                .first()
            )
            if subscription is None:
                subscription = Subscription(
                    application=application,
                    type=type,
                    token=token,
                    token_digest=digest,
                    keys=keys or {},
                    tags=tags_merge({}, tags or {}),
                    last_active_at=now,
                    **{k: v for k, v in profile.items() if v is not None},
                )
                if external_user_id:
                    subscription.user = user_get_or_create(
                        application=application, external_user_id=external_user_id
                    )
                subscription.save()
                _record(
                    subscription,
                    SubscriptionEvent.Kind.CREATED,
                    actor,
                    {"type": type, "external_user_id": external_user_id},
                )
                return subscription, True
            changes = _apply_changes(
                subscription, actor, tags=tags, external_user_id=external_user_id, **profile
            )
            if keys and keys != subscription.keys:
                subscription.keys = keys
                changes["keys"] = "replaced"
            if not subscription.enabled and subscription.disabled_reason == TOKEN_INVALID:
                # The device handed us the token again: it is alive after all.
                subscription.enabled = True
                subscription.disabled_reason = ""
                _record(subscription, SubscriptionEvent.Kind.ENABLED, actor, {"reregistered": True})
            subscription.last_active_at = now
            subscription.save()
            _record(subscription, SubscriptionEvent.Kind.REREGISTERED, actor, changes)
            return subscription, False
    except IntegrityError:
        # A concurrent registration of the same token won the insert: update that one.
        return subscription_register(
            application=application,
            actor=actor,
            type=type,
            token=token,
            external_user_id=external_user_id,
            tags=tags,
            keys=keys,
            **profile,
        )


def _checked(tags: dict | None, profile: dict[str, Any]) -> tuple[dict | None, dict[str, Any]]:
    profile = profile_clean({**profile, "tags": tags})
    return profile.pop("tags"), profile


def subscription_changes_check(**changes: Any) -> dict[str, Any]:
    """The changes as subscription_update takes them (tags, language, country, timezone,
    device; others pass through), each checked and normalized by its rule as
    subscription_update does it: raises ValidationFailed naming every field that breaks one.
    The admin's form calls it to show the refusal on the field."""
    return profile_clean(changes)


def _apply_changes(
    subscription: Subscription,
    actor: str,
    *,
    tags: dict | None = None,
    external_user_id: str | None = None,
    **profile: Any,
) -> dict:
    """Applies profile and tag changes in memory; returns what changed (old, new)."""
    changes: dict[str, Any] = {}
    for name in _PROFILE_FIELDS:
        value = profile.get(name)
        if value is not None and getattr(subscription, name) != value:
            changes[name] = [getattr(subscription, name), value]
            setattr(subscription, name, value)
    if tags:
        merged = tags_merge(subscription.tags, tags)
        if merged != subscription.tags:
            changes["tags"] = [subscription.tags, merged]
            subscription.tags = merged
    if external_user_id and (
        subscription.user is None or subscription.user.external_user_id != external_user_id
    ):
        old = subscription.user.external_user_id if subscription.user else None
        subscription.user = user_get_or_create(
            application=subscription.application, external_user_id=external_user_id
        )
        changes["external_user_id"] = [old, external_user_id]
    return changes


def subscription_update(
    *,
    subscription: Subscription,
    actor: str,
    enabled: bool | None = None,
    token: str | None = None,
    keys: dict[str, str] | None = None,
    tags: dict | None = None,
    touch: bool = True,
    **profile: Any,
) -> Subscription:
    """Updates a subscription; `tags` merge (None or "" removes a tag). `token` must already be
    normalized; a token another subscription of the same type has raises TokenTaken. `touch`:
    the change is the device's own activity (an operator's edit is not, and leaves
    last_active_at, which campaigns target by, alone). Tags and profile fields are checked
    as in subscription_register."""
    tags, profile = _checked(tags, profile)
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",)).select_related(
                "user", "application"
            )
        ).get(pk=subscription.pk)
        changes = _apply_changes(subscription, actor, tags=tags, **profile)
        if token is not None and token != subscription.token:
            digest = crypto.token_digest(subscription.type, token)
            taken = (
                Subscription.objects.filter(
                    application=subscription.application_id,
                    type=subscription.type,
                    token_digest=digest,
                )
                .exclude(pk=subscription.pk)
                .exists()
            )
            if taken:
                raise TokenTaken()
            subscription.token = token
            subscription.token_digest = digest
            _record(subscription, SubscriptionEvent.Kind.TOKEN_CHANGED, actor)
        if keys and keys != subscription.keys:  # a WebPush endpoint's keys change with it
            subscription.keys = keys
            changes["keys"] = "replaced"
        if enabled is not None and enabled != subscription.enabled:
            subscription.enabled = enabled
            subscription.disabled_reason = "" if enabled else DISABLED_BY_REQUEST
            if enabled:
                _record(subscription, SubscriptionEvent.Kind.ENABLED, actor, {"reason": ""})
            else:
                _disabled_events_write([subscription.pk], reason=DISABLED_BY_REQUEST, actor=actor)
        if touch:
            subscription.last_active_at = timezone.now()
        subscription.save()
        if changes:
            _record(subscription, SubscriptionEvent.Kind.UPDATED, actor, changes)
    return subscription


class TokenTaken(InputInvalid):
    """Another subscription of the same application and type already has this token."""

    def __init__(self) -> None:
        super().__init__("Another subscription of this type already has this token.", field="token")


def subscription_disable(*, subscription_id, reason: str, actor: str = SYSTEM) -> bool:
    """Disables a subscription (an operator's decision, a bounced address...). Returns
    whether it was enabled before."""
    with transaction.atomic():
        return bool(
            subscriptions_disable(subscription_ids=[subscription_id], reason=reason, actor=actor)
        )


def subscriptions_disable(
    *,
    subscription_ids: Iterable,
    reason: str,
    actor: str = SYSTEM,
    now: datetime | None = None,
) -> list:
    """Disables the enabled subscriptions among `subscription_ids` in three statements for
    any number (the delivery pipeline passes a batch's dead tokens here), writing a DISABLED
    event for each. Returns the ids it disabled. Run it inside a transaction."""
    ids = list(
        Subscription.objects.filter(pk__in=subscription_ids, enabled=True).values_list(
            "pk", flat=True
        )
    )
    if not ids:
        return ids
    Subscription.objects.filter(pk__in=ids).update(
        enabled=False, disabled_reason=reason, updated_at=now or timezone.now()
    )
    _disabled_events_write(ids, reason=reason, actor=actor)
    return ids


def _disabled_events_write(subscription_ids: list, *, reason: str, actor: str) -> None:
    SubscriptionEvent.objects.bulk_create(
        SubscriptionEvent(
            subscription_id=pk,
            kind=SubscriptionEvent.Kind.DISABLED,
            actor=actor,
            changes={"reason": reason},
        )
        for pk in subscription_ids
    )


def subscription_delete(*, subscription: Subscription) -> None:
    subscription.delete()
