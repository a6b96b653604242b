"""Writes of applications and their API keys."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from accounts import credentials
from accounts.models import ApiKey, Application, ChannelCredential, MessageQuota
from accounts.selectors import api_key_digest
from core import channels

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
    settings: dict[str, Any] | None = None,
    credentials: Mapping[str, dict[str, Any]] | None = None,
) -> Application:
    """Creates an application with an unlimited quota row and, for each channel of
    `credentials`, its credentials as given (check them first: channel_credentials_clean)."""
    with transaction.atomic():
        application = Application.objects.create(name=name, settings=settings or {})
        MessageQuota.objects.create(application=application)
        for channel, values in (credentials or {}).items():
            channel_credentials_store(application=application, channel=channel, values=values)
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


def channel_credentials_clean(*, channel: str, values: dict[str, Any]) -> dict[str, Any]:
    """A channel's credentials as they will be stored, checked by its adapter's
    `clean_credentials`; CredentialsInvalid says what is wrong. `{}` is stored as `{}` (it
    removes them) unless the check makes credentials of nothing (WebPush's VAPID keys)."""
    if not isinstance(values, dict):
        raise credentials.CredentialsInvalid("Credentials must be a JSON object.")
    spec = channels.SPECS.get(channel)
    if spec is None:
        raise credentials.CredentialsInvalid(
            f"Unknown channel {channel!r}; known: {', '.join(channels.CHANNELS)}."
        )
    if not spec.credentials:
        raise credentials.CredentialsInvalid(f"{channel} takes no credentials.")
    clean = _credentials_check(spec)
    default_subject = django_settings.PUBLIC_URL
    if not default_subject.startswith("https://"):
        default_subject = "mailto:webpush@localhost"
    try:
        return clean(values, default_subject=default_subject)
    except credentials.CredentialsInvalid:
        if values:
            raise
        return {}


def _credentials_check(spec: channels.ChannelSpec) -> Callable[..., dict[str, Any]]:
    """The adapter's `clean_credentials(values, *, default_subject)`; for an adapter that has
    none yet (or is not installed), the check accounts.credentials has for its channel."""
    try:
        check = getattr(spec.adapter_class(), "clean_credentials", None)
    except ImportError:
        check = None
    if check is not None:
        return check
    # The checks of accounts.credentials, until every adapter has its own (then this goes).
    legacy = {
        channels.IOS_PUSH: _apns_credentials_clean,
        channels.ANDROID_PUSH: lambda values, **_: credentials.fcm_credentials_clean(
            service_account=json.dumps(values.get("service_account", values))
        ),
        channels.EMAIL: lambda values, **_: credentials.email_credentials_clean(values),
        channels.SMS: lambda values, **_: credentials.sms_credentials_clean(values),
        channels.WEB_PUSH: credentials.web_push_credentials_clean,
        channels.KAKAOTALK: lambda values, **_: credentials.kakao_credentials_clean(values),
    }
    if spec.type not in legacy:
        raise credentials.CredentialsInvalid(f"{spec.type} has no credentials check.")
    return legacy[spec.type]


def _apns_credentials_clean(values: dict[str, Any], **_: Any) -> dict[str, Any]:
    try:
        return credentials.apns_credentials_clean(**values)
    except TypeError as exc:
        raise credentials.CredentialsInvalid(
            "APNs credentials take private_key, key_id, team_id, topic and sandbox."
        ) from exc


def channel_credentials_store(
    *, application: Application, channel: str, values: dict[str, Any]
) -> None:
    """Stores one channel's credentials as given (already checked by channel_credentials_clean),
    replacing what was there and recording when; `{}` removes them."""
    if channel not in channels.CHANNELS:
        raise credentials.CredentialsInvalid(
            f"Unknown channel {channel!r}; known: {', '.join(channels.CHANNELS)}."
        )
    if not values:
        ChannelCredential.objects.filter(application=application, channel=channel).delete()
        return
    ChannelCredential.objects.update_or_create(
        application=application,
        channel=channel,
        defaults={"values": values, "set_at": timezone.now()},
    )


def channel_credentials_set(
    *, application: Application, channel: str, values: dict[str, Any]
) -> dict[str, Any]:
    """Checks and stores one channel's credentials (channel_credentials_clean), replacing what
    was there; returns what was stored. For WebPush, `{}` generates VAPID keys; for the other
    channels `{}` removes them."""
    cleaned = channel_credentials_clean(channel=channel, values=values)
    channel_credentials_store(application=application, channel=channel, values=cleaned)
    return cleaned


def channel_credentials_remove(*, application: Application, channel: str) -> None:
    """Removes a channel's credentials: its messages then fail `channel_unavailable`."""
    channel_credentials_store(application=application, channel=channel, values={})
