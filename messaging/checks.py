"""A refusal to start when stored secrets cannot be decrypted with the configured keys."""

from __future__ import annotations

import contextlib

from django.core import checks
from django.db import DatabaseError

from .crypto import DecryptionError


def verify_encrypted_values(sample: int = 20) -> None:
    """Decrypts a sample of every encrypted column; raises DecryptionError on the first failure.

    Called when the web app and the workers start, so a wrong FIELD_ENCRYPTION_KEYS stops
    them at once instead of sending garbage to providers later.
    """
    from .models import Application, Subscription

    # Ordered by primary key: an index walk, however many rows there are.
    list(Application.objects.order_by("pk")[:sample])
    list(Subscription.objects.order_by("pk").only("id", "token")[:sample])


def verify_on_start() -> None:
    """For process start-up: a decryption failure stops the process; an unreachable or
    unmigrated database is left to the code that needs it."""
    with contextlib.suppress(DatabaseError):
        verify_encrypted_values()


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
