"""Writes of applications and their API keys."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from accounts import audit, credentials
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
    clean = spec.adapter_class().clean_credentials
    default_subject = django_settings.PUBLIC_URL
    if not default_subject.startswith("https://"):
        default_subject = "mailto:webpush@localhost"
    try:
        return clean(values, default_subject=default_subject)
    except credentials.CredentialsInvalid:
        if values:
            raise
        return {}


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


def _identity_secret() -> str:
    return secrets.token_hex(32)


def identity_verification_set(*, application: Application, enabled: bool) -> str | None:
    """Turns identity verification on or off. Turning it on for an application without a
    secret generates one and returns it (shown once, stored encrypted); otherwise None."""
    generated = None
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        fields = ["identity_verification"]
        if enabled and not application.identity_secret:
            generated = application.identity_secret = _identity_secret()
            fields.append("identity_secret")
        application.identity_verification = enabled
        application.save(update_fields=fields)
    return generated


def origin_clean(value: str) -> str:
    """A web origin as browsers send it ("https://shop.example.com", "http://127.0.0.1:8080"):
    scheme and host, lower case, no path, query or trailing slash. ValueError otherwise."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an origin: it needs http:// or https:// and a host.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an origin: no path, query or user part.")
    host = parts.hostname
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def application_settings_update(
    *,
    application: Application,
    actor: str,
    identity_verification: bool | None = None,
    retention_days: int | None = None,
    allowed_origins: list[str] | None = None,
) -> tuple[Application, str | None]:
    """PUT /applications/current: sets what is given (None: unchanged), records one audit row
    naming the changed fields (old and new values; none of them is a secret), and returns the
    application and, when identity verification was turned on for the first time, its new
    secret (shown once)."""
    generated = None
    with transaction.atomic():
        if identity_verification is not None:
            before = Application.objects.only("identity_verification").get(pk=application.pk)
            generated = identity_verification_set(
                application=application, enabled=identity_verification
            )
        locked = Application.objects.select_for_update().get(pk=application.pk)
        changes: dict[str, list] = {}
        if identity_verification is not None and before.identity_verification != (
            identity_verification
        ):
            changes["identity_verification"] = [
                before.identity_verification,
                identity_verification,
            ]
        fields = []
        for name, value in (
            ("retention_days", retention_days),
            ("allowed_origins", allowed_origins),
        ):
            if value is not None and getattr(locked, name) != value:
                changes[name] = [getattr(locked, name), value]
                setattr(locked, name, value)
                fields.append(name)
        if fields:
            locked.save(update_fields=fields)
        if changes:
            audit.audit_record(
                application_id=locked.pk,
                actor=actor,
                action=audit.SETTINGS_CHANGED,
                object_type="application",
                object_id=locked.pk,
                details={"changes": changes},
            )
    return locked, generated


def identity_secret_rotate(*, application: Application) -> str:
    """A new identity secret, returned once; the one it replaces stays valid for
    IDENTITY_SECRET_GRACE_SECONDS, so backends can switch without a window of 401s."""
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        application.identity_secret_previous = application.identity_secret
        application.identity_secret_rotated_at = (
            timezone.now() if application.identity_secret else None
        )
        application.identity_secret = _identity_secret()
        application.save(
            update_fields=[
                "identity_secret",
                "identity_secret_previous",
                "identity_secret_rotated_at",
            ]
        )
    return application.identity_secret
