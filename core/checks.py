"""The system check that the configured FIELD_ENCRYPTION_KEYS open the stored secrets."""

from __future__ import annotations

from django.core import checks
from django.db import DatabaseError

from core.crypto import DecryptionError
from core.encryption import verify_encrypted_values


@checks.register(checks.Tags.database)
def check_encryption_keys(app_configs, databases=None, **kwargs):
    # Like Django's own database checks: only when asked to look at a database (`migrate`,
    # `check --database default`), never for commands that do not touch one.
    if not databases:
        return []
    try:
        verify_encrypted_values()
    except DecryptionError as exc:
        return [checks.Critical(str(exc), id="core.E001")]
    except DatabaseError:
        return []  # not migrated yet: nothing stored to check
    return []
