"""Writes of applications, their API keys and their channel credentials. Each change is
recorded in the audit log (accounts.audit) in its own transaction, with the actor the caller
passes: the API's key, the admin user, or the system for commands and seeds."""

from __future__ import annotations

import re
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
from core.exceptions import ValidationFailed

_KEY_PREFIXES = {ApiKey.Scope.SERVER: "sk_", ApiKey.Scope.CLIENT: "ck_"}
# The stored, logged and audited start of a key: "sk_" and 8 of its random characters (48
# bits), enough to tell keys apart in logs and lists, far too little to guess the rest.
PREFIX_LENGTH = 11
# What the admin's application form writes through application_update.
APPLICATION_FIELDS = (
    "name",
    "settings",
    "identity_verification",
    "retention_days",
    "allowed_origins",
    "frequency_cap",
)
# The frequency cap's bounds: {"max": 1..MAX_CAP, "per_seconds": 1..MAX_CAP_WINDOW_SECONDS}.
MAX_CAP = 10_000
MAX_CAP_WINDOW_SECONDS = 31 * 86400
# application_settings_update: a setting not given (None is a value of the frequency cap).
UNCHANGED: Any = object()
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
    retention_days: int | None = None,
    allowed_origins: list[str] | None = None,
    frequency_cap: dict[str, int] | None = None,
    actor: str = audit.SYSTEM,
) -> Application:
    """Creates an application with an unlimited quota row and, for each channel of
    `credentials`, its credentials as given (check them first: channel_credentials_clean).
    Audited as created by `actor` (scripts and seeds leave the default, the system)."""
    fields: dict[str, Any] = {"name": name, "settings": settings or {}}
    if retention_days is not None:
        fields["retention_days"] = retention_days
    if allowed_origins is not None:
        fields["allowed_origins"] = allowed_origins
    if frequency_cap is not None:
        fields["frequency_cap"] = frequency_cap_clean(frequency_cap)
    with transaction.atomic():
        application = Application.objects.create(**fields)
        MessageQuota.objects.create(application=application)
        audit.audit_record(
            application_id=application.pk,
            actor=actor,
            action=audit.APPLICATION_CREATED,
            object_type="application",
            object_id=application.pk,
            details={"name": name, "channels": sorted(credentials or {})},
        )
        for channel, values in (credentials or {}).items():
            channel_credentials_store(
                application=application, channel=channel, values=values, actor=actor
            )
    return application


def application_update(
    *, application: Application, actor: str, action: str = audit.APPLICATION_CHANGED, **fields: Any
) -> tuple[Application, str | None]:
    """Sets the given fields among APPLICATION_FIELDS that differ from what is stored and
    records one audit row: the admin's form (APPLICATION_CHANGED) names the changed fields only
    (`settings` may hold anything); the API (SETTINGS_CHANGED, application_settings_update)
    gives their old and new values, none of them a secret. Returns the application and, when
    identity verification was turned on for the first time, its new secret (shown once)."""
    unknown = set(fields) - set(APPLICATION_FIELDS)
    if unknown:
        raise ValueError(f"not fields of the application form: {sorted(unknown)}")
    if "frequency_cap" in fields:
        fields["frequency_cap"] = frequency_cap_clean(fields["frequency_cap"])
    generated = None
    with transaction.atomic():
        locked = Application.objects.select_for_update().get(pk=application.pk)
        changed = [name for name in APPLICATION_FIELDS if name in fields]
        changed = [name for name in changed if getattr(locked, name) != fields[name]]
        before = {name: getattr(locked, name) for name in changed}
        if "identity_verification" in changed:
            generated = identity_verification_set(
                application=locked, enabled=fields["identity_verification"]
            )
            locked.refresh_from_db(fields=["identity_verification", "identity_secret"])
        written = [name for name in changed if name != "identity_verification"]
        for name in written:
            setattr(locked, name, fields[name])
        if written:
            locked.save(update_fields=written)
        if changed:
            if action == audit.SETTINGS_CHANGED:
                details = {"changes": {name: [before[name], fields[name]] for name in changed}}
            else:
                details = {"fields": changed}
            audit.audit_record(
                application_id=locked.pk,
                actor=actor,
                action=action,
                object_type="application",
                object_id=locked.pk,
                details=details,
            )
    return locked, generated


def api_key_create(
    *, application: Application, scope: str, name: str = "", actor: str = audit.SYSTEM
) -> NewApiKey:
    """Creates a key; the raw key is returned once and only its SHA-256 digest is stored.
    Audited with its name, scope and prefix (never the key)."""
    raw = _KEY_PREFIXES[ApiKey.Scope(scope)] + secrets.token_urlsafe(32)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            application=application,
            scope=scope,
            name=name,
            prefix=raw[:PREFIX_LENGTH],
            digest=api_key_digest(raw),
        )
        audit.audit_record(
            application_id=application.pk,
            actor=actor,
            action=audit.API_KEY_CREATED,
            object_type="api_key",
            object_id=api_key.pk,
            details=_key_details(api_key),
        )
    return NewApiKey(api_key=api_key, raw=raw)


def api_key_revoke(*, api_key: ApiKey, actor: str) -> ApiKey:
    """Revokes a key at once: the next request made with it is 401 (every request looks its
    key up in the database). Revoking a revoked key changes nothing and records nothing."""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit.audit_record(
                application_id=locked.application_id,
                actor=actor,
                action=audit.API_KEY_REVOKED,
                object_type="api_key",
                object_id=locked.pk,
                details=_key_details(locked),
            )
    api_key.revoked_at = locked.revoked_at
    return api_key


def _key_details(api_key: ApiKey) -> dict[str, str]:
    return {"name": api_key.name, "scope": api_key.scope, "prefix": api_key.prefix}


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
    *, application: Application, channel: str, values: dict[str, Any], actor: str = audit.SYSTEM
) -> None:
    """Stores one channel's credentials as given (already checked by channel_credentials_clean),
    replacing what was there and recording when; `{}` removes them. Audited as
    CREDENTIALS_CHANGED with the names of the fields that changed, or CREDENTIALS_REMOVED
    (when there were some); never their values."""
    if channel not in channels.CHANNELS:
        raise credentials.CredentialsInvalid(
            f"Unknown channel {channel!r}; known: {', '.join(channels.CHANNELS)}."
        )
    with transaction.atomic():
        stored = (
            ChannelCredential.objects.select_for_update()
            .filter(application=application, channel=channel)
            .first()
        )
        if not values:
            if stored is None:
                return
            stored.delete()
            action, details = audit.CREDENTIALS_REMOVED, {"channel": channel}
        else:
            before = stored.values if stored is not None else {}
            ChannelCredential.objects.update_or_create(
                application=application,
                channel=channel,
                defaults={"values": values, "set_at": timezone.now()},
            )
            changed = sorted(
                name for name in set(before) | set(values) if before.get(name) != values.get(name)
            )
            action, details = audit.CREDENTIALS_CHANGED, {"channel": channel, "fields": changed}
        audit.audit_record(
            application_id=application.pk,
            actor=actor,
            action=action,
            object_type="channel_credentials",
            object_id=channel,
            details=details,
        )


def channel_credentials_set(
    *, application: Application, channel: str, values: dict[str, Any], actor: str = audit.SYSTEM
) -> dict[str, Any]:
    """Checks and stores one channel's credentials (channel_credentials_clean), replacing what
    was there; returns what was stored. For WebPush, `{}` generates VAPID keys; for the other
    channels `{}` removes them."""
    cleaned = channel_credentials_clean(channel=channel, values=values)
    channel_credentials_store(application=application, channel=channel, values=cleaned, actor=actor)
    return cleaned


def channel_credentials_remove(*, application: Application, channel: str, actor: str) -> None:
    """Removes a channel's credentials: its messages then fail `channel_unavailable`."""
    channel_credentials_store(application=application, channel=channel, values={}, actor=actor)


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


# A web origin as browsers send it: http or https, a host name or IPv4 address (letters,
# digits, hyphens and dots), an optional port 1-65535, an optional trailing "/". The OpenAPI
# document gives the same pattern (accounts.api.applications), so what it calls valid is.
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ORIGIN_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_LABEL}(?:[.]{_LABEL})*(?::{_PORT})?/?$"
_ORIGIN = re.compile(ORIGIN_PATTERN)


def origin_clean(value: str) -> str:
    """A web origin as browsers send it ("https://shop.example.com", "http://127.0.0.1:8080"):
    scheme and host, lower case, no path, query or trailing slash (ORIGIN_PATTERN; IPv6
    literals are not taken). ValueError saying what is wrong otherwise."""
    if not _ORIGIN.fullmatch(value):
        rest = value.partition("://")[2]
        if not value.lower().startswith(("http://", "https://")) or not rest:
            reason = "it needs http:// or https:// and a host"
        elif any(mark in rest.rstrip("/") for mark in "/?#@"):
            reason = "no path, query or user part"
        else:
            reason = "the host must be a name or an IPv4 address, the port 1-65535"
        raise ValueError(f"{value!r} is not an origin: {reason}.")
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def frequency_cap_clean(value: Any) -> dict[str, int] | None:
    """An application's frequency cap as stored: None (no cap), or `{"max", "per_seconds"}`,
    whole numbers from 1 to MAX_CAP and to MAX_CAP_WINDOW_SECONDS (31 days).
    ValidationFailed on `frequency_cap` saying what is wrong otherwise."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _cap_invalid('The frequency cap is {"max": N, "per_seconds": S} or null.')
    unknown = sorted(set(value) - {"max", "per_seconds"})
    if unknown:
        raise _cap_invalid(f"Unknown field(s): {', '.join(map(ascii, unknown))}.")
    for name, highest in (("max", MAX_CAP), ("per_seconds", MAX_CAP_WINDOW_SECONDS)):
        number = value.get(name)
        if type(number) is not int or not 1 <= number <= highest:
            raise _cap_invalid(f'"{name}" is a whole number from 1 to {highest}.')
    return {"max": value["max"], "per_seconds": value["per_seconds"]}


def _cap_invalid(message: str) -> ValidationFailed:
    return ValidationFailed(details={"frequency_cap": [message]})


def application_settings_update(
    *,
    application: Application,
    actor: str,
    identity_verification: bool | None = None,
    retention_days: int | None = None,
    allowed_origins: list[str] | None = None,
    frequency_cap: dict[str, int] | None = UNCHANGED,
) -> tuple[Application, str | None]:
    """PUT /applications/current: application_update of what is given (None: unchanged; for
    the frequency cap, UNCHANGED, as None removes it), audited as SETTINGS_CHANGED with the
    old and new values."""
    given = {
        "identity_verification": identity_verification,
        "retention_days": retention_days,
        "allowed_origins": allowed_origins,
    }
    fields = {name: value for name, value in given.items() if value is not None}
    if frequency_cap is not UNCHANGED:
        fields["frequency_cap"] = frequency_cap
    return application_update(
        application=application, actor=actor, action=audit.SETTINGS_CHANGED, **fields
    )


def identity_secret_rotate(*, application: Application, actor: str) -> str:
    """A new identity secret, returned once; the one it replaces stays valid for
    IDENTITY_SECRET_GRACE_SECONDS, so backends can switch without a window of 401s.
    Audited (without either secret)."""
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
        audit.audit_record(
            application_id=application.pk,
            actor=actor,
            action=audit.IDENTITY_SECRET_ROTATED,
            object_type="application",
            object_id=application.pk,
            details={"grace_seconds": django_settings.IDENTITY_SECRET_GRACE_SECONDS},
        )
    return application.identity_secret
