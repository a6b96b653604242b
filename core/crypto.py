"""Encryption at rest (MultiFernet) and the keyed digest that makes tokens searchable.

Keys come from settings.FIELD_ENCRYPTION_KEYS, newest first: the newest encrypts, all of
them decrypt, so keys rotate by prepending a new one and running `rotate_encryption_keys`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
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


@lru_cache(maxsize=4)
def _batch_keys(keys: tuple[str, ...]) -> tuple[tuple[bytes, algorithms.AES], ...]:
    """Each key's signing half and its encryption half as an AES key."""
    _fernet(keys)  # refuses a bad key as decrypt() would
    halves = []
    for key in keys:
        raw = base64.urlsafe_b64decode(key.strip().encode())
        halves.append((raw[:16], algorithms.AES(raw[16:])))
    return tuple(halves)


def decrypt_many(ciphertexts: Sequence[str]) -> list[str]:
    """decrypt() of many values at once (a delivery batch's tokens), a third of its CPU per
    value: Fernet builds an HMAC, a cipher and an unpadder object for each value, where
    this verifies each value's HMAC-SHA256 with the standard library and decrypts the whole
    batch's AES-CBC in one call (CBC decryption is ECB decryption of each block XORed with
    the block before it, RFC 2040's chaining; the spec:
    https://github.com/fernet/spec/blob/master/Spec.md). Values are checked as Fernet
    checks them (version, HMAC, padding; no TTL, as decrypt() uses none); a value that fails
    any check, or that no key verifies, goes through decrypt() for its error or the key that
    MultiFernet would find. `tests/core/test_crypto.py` compares both on every path."""
    keys = _batch_keys(tuple(settings.FIELD_ENCRYPTION_KEYS))
    decoded: list[tuple[bytes, algorithms.AES] | None] = []
    for ciphertext in ciphertexts:
        found = None
        try:
            data = base64.urlsafe_b64decode(ciphertext)
        except (binascii.Error, ValueError):
            data = b""
        if len(data) >= 73 and data[0] == 0x80 and (len(data) - 57) % 16 == 0:
            signed, mac = data[:-32], data[-32:]
            for signing, aes in keys:
                if hmac.compare_digest(hmac.digest(signing, signed, "sha256"), mac):
                    found = (data, aes)
                    break
        decoded.append(found)
    by_key: dict[int, list[int]] = {}
    for index, found in enumerate(decoded):
        if found is not None:
            by_key.setdefault(id(found[1]), []).append(index)
    plaintexts: list[str | None] = [None] * len(decoded)
    for indexes in by_key.values():
        # ECB keeps no state between blocks: one call decrypts every value's blocks.
        decryptor = Cipher(decoded[indexes[0]][1], modes.ECB()).decryptor()  # noqa: S305
        blocks = decryptor.update(b"".join(decoded[i][0][25:-32] for i in indexes))
        offset = 0
        for index in indexes:
            data = decoded[index][0]
            size = len(data) - 57
            chained = int.from_bytes(blocks[offset : offset + size], "big") ^ int.from_bytes(
                data[9 : 9 + size], "big"
            )
            offset += size
            padded = chained.to_bytes(size, "big")
            pad = padded[-1]
            if 1 <= pad <= 16 and padded[-pad:] == bytes((pad,)) * pad:
                with contextlib.suppress(UnicodeDecodeError):
                    plaintexts[index] = padded[:-pad].decode()
    return [
        plaintext if plaintext is not None else decrypt(ciphertext)
        for plaintext, ciphertext in zip(plaintexts, ciphertexts, strict=True)
    ]


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
