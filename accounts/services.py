"""Writes of applications and their API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Application, MessageQuota
from accounts.selectors import api_key_digest

_KEY_PREFIXES = {ApiKey.Scope.SERVER: "sk_", ApiKey.Scope.CLIENT: "ck_"}
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def actor_of(api_key: ApiKey) -> str:
    return f"api_key:{api_key.prefix}"


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
    removes them. Check them first (accounts.credentials)."""
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
