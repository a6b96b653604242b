"""Provider credentials: checking what an operator hands in (a .p8 key, a service-account
file, an SMTP relay...) and showing what is stored without its secrets.

Each channel's check is its adapter's `clean_credentials` (the adapter knows what it can
send with); the functions here keep the names the command line, the admin and the services
call. The display helper serves every channel's credentials.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import serialization

from adapters.base import CredentialsInvalid

__all__ = [
    "CredentialsInvalid",
    "apns_credentials_clean",
    "credentials_display",
    "email_credentials_clean",
    "fcm_credentials_clean",
    "fingerprint",
    "kakao_credentials_clean",
    "sms_credentials_clean",
    "web_push_credentials_clean",
]


# A value under one of these names is secret whatever the caller listed: a channel added later
# cannot show its password by forgetting to name it.
_SECRET_NAMES = (
    "private_key", "certificate", "password", "secret", "auth_token", "secret_key",
)  # fmt: skip


def apns_credentials_clean(
    *, private_key: str, key_id: str, team_id: str, topic: str, sandbox: bool = False
) -> dict[str, Any]:
    """The stored form of APNs token-auth credentials (`APNsAdapter.clean_credentials`)."""
    from adapters.apns import APNsAdapter

    values = {"private_key": private_key, "key_id": key_id, "team_id": team_id, "topic": topic}
    return APNsAdapter.clean_credentials(values | {"sandbox": sandbox})


def fcm_credentials_clean(*, service_account: str) -> dict[str, Any]:
    """The stored form of FCM credentials from the text of a service-account JSON file."""
    from adapters.fcm import FCMAdapter

    return FCMAdapter.clean_credentials({"service_account": service_account})


def email_credentials_clean(values: dict[str, Any]) -> dict[str, Any]:
    """An SMTP relay (`EmailAdapter.clean_credentials`)."""
    from adapters.email import EmailAdapter

    return EmailAdapter.clean_credentials(values)


def sms_credentials_clean(values: dict[str, Any]) -> dict[str, Any]:
    """A Twilio account (`TwilioSMSAdapter.clean_credentials`)."""
    from adapters.sms import TwilioSMSAdapter

    return TwilioSMSAdapter.clean_credentials(values)


def web_push_credentials_clean(values: dict[str, Any], *, default_subject: str) -> dict[str, Any]:
    """VAPID keys and subject (`WebPushAdapter.clean_credentials`); `{}` generates keys."""
    from adapters.webpush import WebPushAdapter

    return WebPushAdapter.clean_credentials(values, default_subject=default_subject)


def kakao_credentials_clean(values: dict[str, Any]) -> dict[str, Any]:
    """NHN Cloud KakaoTalk Bizmessage (`KakaoAdapter.clean_credentials`)."""
    from adapters.kakao import KakaoAdapter

    return KakaoAdapter.clean_credentials(values)


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
