"""core.crypto.decrypt_many against Fernet itself: the same plaintexts for every value, and the
same errors for every value Fernet refuses."""

from __future__ import annotations

import base64
import random

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from core import crypto

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD])
def test_every_value_decrypts_as_fernet_decrypts_it():
    rng = random.Random(7)
    plaintexts = [
        "".join(rng.choice("abcdef0123456789é한") for _ in range(rng.randrange(0, 200)))
        for _ in range(300)
    ]
    # Under the newest key, under an older one, and both mixed in one batch.
    ciphertexts = [
        Fernet((NEW if i % 3 else OLD).encode()).encrypt(p.encode()).decode()
        for i, p in enumerate(plaintexts)
    ]
    assert crypto.decrypt_many(ciphertexts) == plaintexts
    assert crypto.decrypt_many(ciphertexts) == [crypto.decrypt(c) for c in ciphertexts]
    assert crypto.decrypt_many([]) == []


def _tampered(ciphertext: str, position: int) -> str:
    data = bytearray(base64.urlsafe_b64decode(ciphertext))
    data[position] ^= 0x01
    return base64.urlsafe_b64encode(bytes(data)).decode()


@override_settings(FIELD_ENCRYPTION_KEYS=[NEW])
@pytest.mark.parametrize(
    "bad",
    [
        lambda good: _tampered(good, 0),  # version
        lambda good: _tampered(good, 30),  # ciphertext: the HMAC no longer verifies
        lambda good: _tampered(good, -1),  # the HMAC itself
        lambda good: good[:-8],  # truncated
        lambda good: "not base64 at all!",
        lambda good: Fernet(Fernet.generate_key()).encrypt(b"other key").decode(),
    ],
)
def test_a_value_fernet_refuses_raises_as_decrypt_does(bad):
    good = Fernet(NEW.encode()).encrypt(b"token").decode()
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_many([good, bad(good)])


@override_settings(FIELD_ENCRYPTION_KEYS=[NEW])
def test_bad_padding_under_a_valid_hmac_is_refused():
    """A value signed with the right key whose plaintext is not PKCS7-padded: Fernet refuses
    it, and so does the batch (through decrypt)."""
    import hashlib
    import hmac
    import os

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    raw = base64.urlsafe_b64decode(NEW)
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(raw[16:]), modes.CBC(iv)).encryptor()
    body = encryptor.update(b"x" * 16) + encryptor.finalize()  # no padding block
    signed = b"\x80" + (0).to_bytes(8, "big") + iv + body
    value = base64.urlsafe_b64encode(signed + hmac.digest(raw[:16], signed, hashlib.sha256))
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_many([value.decode()])
