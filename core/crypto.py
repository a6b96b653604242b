"""Encryption at rest (MultiFernet) and the keyed digest that makes tokens searchable.

Keys come from settings.FIELD_ENCRYPTION_KEYS, newest first: the newest encrypts, all of
them decrypt, so keys rotate by prepending a new one and running `rotate_encryption_keys`.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(ImproperlyConfigured):
    """A stored value cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS holds a key that is not a valid Fernet key: {exc}"
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "A stored value cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS: "
            "was a key removed before `manage.py rotate_encryption_keys` ran?"
        ) from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypts a value under the newest key."""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("A stored value cannot be decrypted with any key.") from exc


def token_digest(kind: str, token: str) -> str:
    """A keyed HMAC of a token, unique per (application, type) without storing it in clear."""
    key = settings.TOKEN_HMAC_KEY.encode()
    return hmac.new(key, f"{kind}\x00{token}".encode(), hashlib.sha256).hexdigest()
