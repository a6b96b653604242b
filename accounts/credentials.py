"""Provider credentials: checking what an operator hands in (a .p8 key, a service-account
file) and showing what is stored without its secrets.

The command line and the admin both check through these functions, so a key that one refuses
the other refuses too; the display helper serves every channel's credentials.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# Which values of each provider's credentials are secret: never shown, only fingerprinted.
# Dotted names reach into nested objects (FCM keeps the service account as one object).
APNS_SECRETS = ("private_key", "certificate")
FCM_SECRETS = ("service_account.private_key",)

# A value under one of these names is secret whatever the caller listed: a channel added later
# cannot show its password by forgetting to name it.
_SECRET_NAMES = ("private_key", "certificate", "password", "secret", "auth_token")

SERVICE_ACCOUNT_FIELDS = ("project_id", "client_email", "private_key", "token_uri")


class CredentialsInvalid(ValueError):
    """Credentials that cannot work; the message says why, for a person to act on."""


def apns_credentials_clean(
    *, private_key: str, key_id: str, team_id: str, topic: str, sandbox: bool = False
) -> dict[str, Any]:
    """The stored form of APNs token-auth credentials; the key must be a PEM EC private key
    (what Apple's .p8 file holds), since APNs signs its provider tokens with ES256."""
    missing = [
        name
        for name, value in (("key id", key_id), ("team id", team_id), ("topic", topic))
        if not (value or "").strip()
    ]
    if missing:
        raise CredentialsInvalid(f"APNs token auth also needs the {', '.join(missing)}.")
    try:
        key = serialization.load_pem_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsInvalid(
            "The APNs key is not a PEM (.p8) private key without a password."
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialsInvalid("The APNs key is not an EC private key, as a .p8 key is.")
    return {
        "auth": "token",
        "key_id": key_id.strip(),
        "team_id": team_id.strip(),
        "topic": topic.strip(),
        "private_key": private_key,
        "sandbox": bool(sandbox),
    }


def fcm_credentials_clean(*, service_account: str) -> dict[str, Any]:
    """The stored form of FCM credentials from the text of a service-account JSON file."""
    try:
        account = json.loads(service_account)
    except json.JSONDecodeError as exc:
        raise CredentialsInvalid(f"The service account is not JSON: {exc}") from exc
    if not isinstance(account, dict):
        raise CredentialsInvalid(
            "The service account is not a JSON object, as a service-account file is."
        )
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not account.get(name)]
    if missing:
        raise CredentialsInvalid(f"The service account lacks {', '.join(missing)}.")
    if account.get("type") != "service_account":
        raise CredentialsInvalid(
            'The file is not a service account: its "type" is not "service_account".'
        )
    return {"service_account": account}


def fingerprint(secret: str) -> str:
    """A short, stable name for a secret: SHA-256 of its public key when it is a PEM private
    key (so it matches what the provider's console shows of the key pair), else of its text;
    the first 16 hex digits."""
    material = secret.encode()
    try:
        key = serialization.load_pem_private_key(material, password=None)
    except (ValueError, TypeError):
        pass
    else:
        material = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return "sha256:" + hashlib.sha256(material).hexdigest()[:16]


def credentials_display(
    credentials: dict[str, Any], *, secret_keys: Iterable[str]
) -> list[tuple[str, str]]:
    """(name, shown value) for every value of the credentials, nested objects flattened to
    dotted names; a secret shows as its fingerprint only."""
    secrets = set(secret_keys)
    shown: list[tuple[str, str]] = []

    def walk(values: dict[str, Any], prefix: str) -> None:
        for name in sorted(values):
            value, dotted = values[name], f"{prefix}{name}"
            if isinstance(value, dict):
                walk(value, f"{dotted}.")
            elif dotted in secrets or _looks_secret(name):
                shown.append((f"{dotted} (fingerprint)", fingerprint(str(value))))
            else:
                shown.append((dotted, json.dumps(value) if not isinstance(value, str) else value))

    walk(credentials, "")
    return shown


def _looks_secret(name: str) -> bool:
    name = name.lower()
    return name.endswith(_SECRET_NAMES) or name.startswith("secret")
