"""Refusals to start: stored secrets that the configured keys cannot decrypt (checked by
core.encryption, whose system check is core.E001), and an outbound proxy variable that cannot
be used (every send through it would fail)."""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from core.encryption import verify_encrypted_values


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
