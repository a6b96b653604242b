"""Refusals to start: stored secrets that the configured keys cannot decrypt, and an outbound
proxy variable that cannot be used (every send through it would fail)."""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from core.crypto import DecryptionError


def verify_encrypted_values(sample: int = 20) -> None:
    """Decrypts a sample of every encrypted column; raises DecryptionError on the first failure.

    Called when the web app and the workers start, so a wrong FIELD_ENCRYPTION_KEYS stops
    them at once instead of sending garbage to providers later.
    """
    from accounts.models import Application

    from .models import Subscription

    # Ordered by primary key: an index walk, however many rows there are.
    list(Application.objects.order_by("pk")[:sample])
    list(Subscription.objects.order_by("pk").only("id", "token")[:sample])


def provider_origins() -> list[str]:
    """The origins the adapters connect to, as the settings name them."""
    origins = ["https://api.push.apple.com", "https://api.sandbox.push.apple.com"]
    origins += [settings.APNS_ENDPOINT, settings.FCM_ENDPOINT]
    return [origin for origin in origins if origin]


def verify_proxies() -> None:
    """Raises ImproperlyConfigured when HTTPS_PROXY / HTTP_PROXY (as the environment gives
    them now) cannot be used for a provider's origin."""
    from adapters.transport.proxy import proxy_for

    for origin in provider_origins():
        try:
            proxy_for(origin)
        except ValueError as exc:
            raise ImproperlyConfigured(f"Outbound proxy for {origin}: {exc}") from exc


def verify_on_start() -> None:
    """For process start-up: a decryption failure or an unusable proxy variable stops the
    process; an unreachable or unmigrated database is left to the code that needs it."""
    verify_proxies()
    with contextlib.suppress(DatabaseError):
        verify_encrypted_values()


@checks.register()
def check_proxies(app_configs, **kwargs):
    try:
        verify_proxies()
    except ImproperlyConfigured as exc:
        return [checks.Critical(str(exc), id="messaging.E002")]
    return []


@checks.register(checks.Tags.database)
def check_encryption_keys(app_configs, databases=None, **kwargs):
    # Like Django's own database checks: only when asked to look at a database (`migrate`,
    # `check --database default`), never for commands that do not touch one.
    if not databases:
        return []
    try:
        verify_encrypted_values()
    except DecryptionError as exc:
        return [checks.Critical(str(exc), id="messaging.E001")]
    except DatabaseError:
        return []  # not migrated yet: nothing stored to check
    return []
