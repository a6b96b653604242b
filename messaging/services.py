"""Writes: applications, API keys, subscriptions and users. Every subscription change
records a SubscriptionEvent with its actor."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import crypto
from .models import (
    ApiKey,
    Application,
    MessageQuota,
    Subscription,
    SubscriptionEvent,
    User,
)
from .selectors import api_key_digest

_KEY_PREFIXES = {ApiKey.Scope.SERVER: "sk_", ApiKey.Scope.CLIENT: "ck_"}
_LAST_USED_RESOLUTION = timedelta(minutes=1)

SYSTEM = "system"


def actor_of(api_key: ApiKey) -> str:
    return f"api_key:{api_key.prefix}"


# --- Applications and keys -------------------------------------------------------------------


@dataclass(frozen=True)
class NewApiKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


def application_create(
    *,
    name: str,
    apns_credentials: dict[str, Any] | None = None,
    fcm_credentials: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> Application:
    """Creates an application with an unlimited quota row."""
    with transaction.atomic():
        application = Application.objects.create(name=name, settings=settings or {})
        MessageQuota.objects.create(application=application)
        application_set_credentials(
            application=application,
            apns_credentials=apns_credentials or None,
            fcm_credentials=fcm_credentials or None,
        )
    return application


def application_set_credentials(
    *,
    application: Application,
    apns_credentials: dict[str, Any] | None = None,
    fcm_credentials: dict[str, Any] | None = None,
) -> Application:
    """Replaces a provider's credentials and records when; None leaves them as they are, {}
    removes them. Check them first (messaging.credentials)."""
    fields = []
    now = timezone.now()
    for provider, credentials in (("apns", apns_credentials), ("fcm", fcm_credentials)):
        if credentials is None:
            continue
        setattr(application, f"{provider}_credentials", credentials)
        setattr(application, f"{provider}_credentials_set_at", now if credentials else None)
        fields += [f"{provider}_credentials", f"{provider}_credentials_set_at"]
    if fields:
        application.save(update_fields=fields)
    return application


def api_key_create(*, application: Application, scope: str, name: str = "") -> NewApiKey:
    """Creates a key; the raw key is returned once and only its SHA-256 digest is stored."""
    raw = _KEY_PREFIXES[ApiKey.Scope(scope)] + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        application=application,
        scope=scope,
        name=name,
        prefix=raw[:11],
        digest=api_key_digest(raw),
    )
    return NewApiKey(api_key=api_key, raw=raw)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Records use, at most once a minute per key, so requests don't each write a row."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < _LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


# --- Subscriptions -----------------------------------------------------------------------------

_PROFILE_FIELDS = ("language", "country", "timezone", "device")


def _record(subscription: Subscription, kind: str, actor: str, changes: dict | None = None):
    SubscriptionEvent.objects.create(
        subscription=subscription, kind=kind, actor=actor, changes=changes or {}
    )


def _merge_tags(current: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    merged = dict(current)
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _user_for(application: Application, external_user_id: str) -> User:
    user, _ = User.objects.get_or_create(application=application, external_user_id=external_user_id)
    return user


def subscription_register(
    *,
    application: Application,
    actor: str,
    type: str,
    token: str,
    external_user_id: str | None = None,
    tags: dict[str, str | None] | None = None,
    **profile: Any,
) -> tuple[Subscription, bool]:
    """Registers (type, token) for the application; the same pair again updates and returns
    the existing subscription. `token` must already be normalized. Returns (sub, created)."""
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
                    tags=_merge_tags({}, tags or {}),
                    last_active_at=now,
                    **{k: v for k, v in profile.items() if v is not None},
                )
                if external_user_id:
                    subscription.user = _user_for(application, external_user_id)
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
            if not subscription.enabled and subscription.disabled_reason == "token_invalid":
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
            **profile,
        )


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
        merged = _merge_tags(subscription.tags, tags)
        if merged != subscription.tags:
            changes["tags"] = [subscription.tags, merged]
            subscription.tags = merged
    if external_user_id and (
        subscription.user is None or subscription.user.external_user_id != external_user_id
    ):
        old = subscription.user.external_user_id if subscription.user else None
        subscription.user = _user_for(subscription.application, external_user_id)
        changes["external_user_id"] = [old, external_user_id]
    return changes


def subscription_update(
    *,
    subscription: Subscription,
    actor: str,
    enabled: bool | None = None,
    token: str | None = None,
    tags: dict | None = None,
    touch: bool = True,
    **profile: Any,
) -> Subscription:
    """Updates a subscription; `tags` merge (None or "" removes a tag). `token` must already be
    normalized; a token another subscription of the same type has raises TokenTaken. `touch`:
    the change is the device's own activity (an operator's edit is not, and leaves
    last_active_at, which campaigns target by, alone)."""
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
        if enabled is not None and enabled != subscription.enabled:
            subscription.enabled = enabled
            subscription.disabled_reason = "" if enabled else "disabled_by_request"
            kind = SubscriptionEvent.Kind.ENABLED if enabled else SubscriptionEvent.Kind.DISABLED
            _record(subscription, kind, actor, {"reason": subscription.disabled_reason})
        if touch:
            subscription.last_active_at = timezone.now()
        subscription.save()
        if changes:
            _record(subscription, SubscriptionEvent.Kind.UPDATED, actor, changes)
    return subscription


class TokenTaken(Exception):
    """Another subscription of the same application and type already has this token."""


def subscription_disable(*, subscription_id, reason: str, actor: str = SYSTEM) -> bool:
    """Disables a subscription (e.g. the provider said its token is dead). Returns whether it
    was enabled before."""
    with transaction.atomic():
        updated = Subscription.objects.filter(pk=subscription_id, enabled=True).update(
            enabled=False, disabled_reason=reason, updated_at=timezone.now()
        )
        if updated:
            SubscriptionEvent.objects.create(
                subscription_id=subscription_id,
                kind=SubscriptionEvent.Kind.DISABLED,
                actor=actor,
                changes={"reason": reason},
            )
    return bool(updated)


def subscription_delete(*, subscription: Subscription) -> None:
    subscription.delete()


# --- Users -------------------------------------------------------------------------------------


def user_identify(*, subscription: Subscription, external_user_id: str, actor: str) -> User:
    """Ties the subscription to the user with this external id, creating the user if new."""
    with transaction.atomic():
        user = _user_for(subscription.application, external_user_id)
        old = subscription.user.external_user_id if subscription.user else None
        if subscription.user_id != user.pk:
            Subscription.objects.filter(pk=subscription.pk).update(
                user=user, updated_at=timezone.now()
            )
            subscription.user = user
            _record(
                subscription,
                SubscriptionEvent.Kind.IDENTIFIED,
                actor,
                {"external_user_id": [old, external_user_id]},
            )
    return user


def user_logout(*, subscription: Subscription, actor: str) -> Subscription:
    """Unties the subscription from its user."""
    with transaction.atomic():
        if subscription.user_id is not None:
            old = subscription.user.external_user_id
            Subscription.objects.filter(pk=subscription.pk).update(
                user=None, updated_at=timezone.now()
            )
            subscription.user = None
            _record(
                subscription,
                SubscriptionEvent.Kind.LOGGED_OUT,
                actor,
                {"external_user_id": [old, None]},
            )
    return subscription
