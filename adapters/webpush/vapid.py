"""VAPID (RFC 8292): our key pairs, and the JWT each credential set signs once per push
service origin and reuses until an hour before it expires."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.base import (
    AdapterConfigurationError,
    CredentialsInvalid,
    credential_fields_allowed,
    credential_text,
)

VAPID_TOKEN_SECONDS = 12 * 3600
VAPID_RENEW_SECONDS = 3600  # a token this close to its expiry is signed again


def b64url_decode(value: Any) -> bytes:
    """base64url with or without padding (as browsers and web-push libraries write it)."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if not isinstance(value, str):
        raise ValueError("not a string")
    value = value.strip().rstrip("=")
    if len(value) % 4 == 1:
        raise ValueError("bad length")
    return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(
        private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


def _load_private_key(value: Any) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from the base64url of its 32-octet scalar (or from PEM, as the
    `vapid` command of py-vapid writes it); ValueError when unusable."""
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(value.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the PEM key is not a P-256 key")
        return key
    raw = b64url_decode(value)
    if len(raw) != 32:
        raise ValueError(f"the raw private key must be 32 octets, not {len(raw)}")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def generate_vapid_keys() -> dict[str, str]:
    """A new VAPID key pair: `vapid_private_key` (base64url of the 32-octet scalar) and
    `vapid_public_key` (base64url of the 65-octet point: a browser's applicationServerKey)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    scalar = private_key.private_numbers().private_value.to_bytes(32, "big")
    return {"vapid_private_key": b64url(scalar), "vapid_public_key": _public_key_b64(private_key)}


def vapid_public_key_of(private_key_b64: str) -> str:
    """The applicationServerKey (base64url, 65-octet point) of a VAPID private key."""
    return _public_key_b64(_load_private_key(private_key_b64))


@dataclass
class Vapid:
    """One credential set: its key, and the signed Authorization value per origin, kept
    until an hour before it expires (for endpoints of up to 1,024 hosts: WNS has one per
    region)."""

    private_key: ec.EllipticCurvePrivateKey
    public_key: str
    subject: str
    tokens: TTLCache = field(
        default_factory=lambda: TTLCache(
            1024, VAPID_TOKEN_SECONDS - VAPID_RENEW_SECONDS, timer=time.time
        )
    )  # origin -> Authorization value
    signed: int = 0  # JWTs signed so far (for the tests and the bench)

    def authorization(self, origin: str) -> bytes:
        value = self.tokens.get(origin)
        if value is not None:
            return value
        expires = int(time.time()) + VAPID_TOKEN_SECONDS
        token = jwt.encode(
            {"aud": origin, "exp": expires, "sub": self.subject},
            self.private_key,
            algorithm="ES256",
            headers={"typ": "JWT"},
        )
        value = self.tokens[origin] = f"vapid t={token}, k={self.public_key}".encode("ascii")
        self.signed += 1
        return value


def vapid_from(values: Mapping[str, Any]) -> Vapid:
    if not isinstance(values, Mapping) or not values.get("vapid_private_key"):
        raise AdapterConfigurationError("Web Push credentials need a vapid_private_key")
    try:
        private_key = _load_private_key(values["vapid_private_key"])
    except (ValueError, TypeError) as exc:
        raise AdapterConfigurationError(f"vapid_private_key is unusable: {exc}") from exc
    public_key = _public_key_b64(private_key)
    given = values.get("vapid_public_key")
    if given:
        try:
            matches = b64url_decode(given) == b64url_decode(public_key)
        except ValueError:
            matches = False
        if not matches:
            raise AdapterConfigurationError(
                "vapid_public_key is not the public key of vapid_private_key"
            )
    subject = str(values.get("subject") or "").strip()
    if not (subject.startswith("mailto:") and len(subject) > 7) and not subject.startswith(
        "https://"
    ):
        raise AdapterConfigurationError(
            "Web Push credentials need a subject: a mailto: address or an https:// URL"
        )
    return Vapid(private_key, public_key, subject)


CREDENTIAL_FIELDS = ("vapid_private_key", "vapid_public_key", "subject")


def clean_credentials(values: Mapping[str, Any], *, default_subject: str = "") -> dict[str, Any]:
    """VAPID keys and the subject push services may contact. `{}` generates a new key pair;
    a private key alone gets its public key derived; a public key that is not the private
    key's is refused (browsers subscribed with the public key)."""
    credential_fields_allowed(values, CREDENTIAL_FIELDS, "WebPush")
    private_key = credential_text(values, "vapid_private_key", "WebPush", required=False)
    public_key = credential_text(values, "vapid_public_key", "WebPush", required=False)
    if private_key:
        try:
            derived = vapid_public_key_of(private_key)
        except ValueError as exc:
            raise CredentialsInvalid(
                'WebPush "vapid_private_key" must be the base64url raw P-256 private key.'
            ) from exc
        if public_key and public_key != derived:
            raise CredentialsInvalid(
                'WebPush "vapid_public_key" is not the public key of "vapid_private_key".'
            )
        keys = {"vapid_private_key": private_key, "vapid_public_key": derived}
    elif public_key:
        raise CredentialsInvalid('WebPush "vapid_public_key" needs its "vapid_private_key".')
    else:
        keys = generate_vapid_keys()
    subject = credential_text(values, "subject", "WebPush", required=False) or default_subject
    if not subject.startswith(("mailto:", "https://")):
        raise CredentialsInvalid('WebPush "subject" must be a mailto: or https:// URL.')
    return keys | {"subject": subject}
