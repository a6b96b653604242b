"""Provider credentials: checking what an operator hands in (a .p8 key, a service-account
file) and showing what is stored without its secrets.

The command line and the admin both check through these functions, so a key that one refuses
the other refuses too; the display helper serves every channel's credentials.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

# Which values of each provider's credentials are secret: never shown, only fingerprinted.
# Dotted names reach into nested objects (FCM keeps the service account as one object).
APNS_SECRETS = ("private_key", "certificate")
FCM_SECRETS = ("service_account.private_key",)

# A value under one of these names is secret whatever the caller listed: a channel added later
# cannot show its password by forgetting to name it.
_SECRET_NAMES = (
    "private_key", "certificate", "password", "secret", "auth_token", "secret_key",
)  # fmt: skip

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


# --- The channels whose credentials are a JSON object (Email, SMS, WebPush, KakaoTalk) -------

SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Twilio's alphanumeric sender ids: up to 11 letters, digits and spaces, at least one letter.
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


def _allowed(values: dict[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise CredentialsInvalid(
            f"{what} credentials have no field {', '.join(unknown)}; known: {', '.join(allowed)}."
        )


def _string(values: dict[str, Any], name: str, what: str, *, required: bool = True) -> str:
    value = values.get(name)
    if value is None or value == "":
        if required:
            raise CredentialsInvalid(f"{what} credentials need {name!r}.")
        return ""
    if not isinstance(value, str) or "\x00" in value or "\r" in value or "\n" in value:
        raise CredentialsInvalid(f"{what} credentials: {name!r} must be one line of text.")
    return value.strip()


def email_credentials_clean(values: dict[str, Any]) -> dict[str, Any]:
    """An SMTP relay: host, port, security (starttls, tls or none), an optional username and
    password (AUTH when a username is set), and the From address and name."""
    fields = ("host", "port", "security", "username", "password", "from_address", "from_name")
    _allowed(values, fields, "Email")
    security = values.get("security", "starttls")
    if security not in SECURITY_PORTS:
        raise CredentialsInvalid('Email "security" must be "starttls", "tls" or "none".')
    port = values.get("port", SECURITY_PORTS[security])
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise CredentialsInvalid('Email "port" must be a number from 1 to 65535.')
    username = _string(values, "username", "Email", required=False)
    password = values.get("password") or ""
    if username and not isinstance(password, str):
        raise CredentialsInvalid('Email "password" must be text.')
    if username and not password:
        raise CredentialsInvalid('Email credentials with a "username" need its "password".')
    from_address = _string(values, "from_address", "Email")
    try:
        validate_email(from_address)
    except ValidationError as exc:
        raise CredentialsInvalid(
            f'Email "from_address" {from_address!r} is not an address.'
        ) from exc
    cleaned = {
        "host": _string(values, "host", "Email"),
        "port": port,
        "security": security,
        "from_address": from_address,
        "from_name": _string(values, "from_name", "Email", required=False),
    }
    if username:
        cleaned |= {"username": username, "password": password}
    return cleaned


def sms_credentials_clean(values: dict[str, Any]) -> dict[str, Any]:
    """A Twilio account (or a gateway speaking its API): account sid, auth token, and either
    a sender (`from`: an E.164 number or an alphanumeric sender id) or a messaging service."""
    fields = ("account_sid", "auth_token", "from", "messaging_service_sid")
    _allowed(values, fields, "SMS")
    cleaned = {
        "account_sid": _string(values, "account_sid", "SMS"),
        "auth_token": _string(values, "auth_token", "SMS"),
    }
    sender = _string(values, "from", "SMS", required=False)
    service = _string(values, "messaging_service_sid", "SMS", required=False)
    if bool(sender) == bool(service):
        raise CredentialsInvalid(
            'SMS credentials need exactly one of "from" and "messaging_service_sid".'
        )
    if sender:
        if not (_E164.match(sender) or _ALPHANUMERIC_SENDER.match(sender)):
            raise CredentialsInvalid(
                'SMS "from" must be an E.164 number (+15005550006) or an alphanumeric sender id.'
            )
        cleaned["from"] = sender
    else:
        cleaned["messaging_service_sid"] = service
    return cleaned


def web_push_credentials_clean(values: dict[str, Any], *, default_subject: str) -> dict[str, Any]:
    """VAPID keys and the subject push services may contact. `{}` generates a new key pair;
    a private key alone gets its public key derived; a public key that is not the private
    key's is refused (browsers subscribed with the public key)."""
    from adapters import webpush  # the VAPID key format is the adapter's

    fields = ("vapid_private_key", "vapid_public_key", "subject")
    _allowed(values, fields, "WebPush")
    private_key = _string(values, "vapid_private_key", "WebPush", required=False)
    public_key = _string(values, "vapid_public_key", "WebPush", required=False)
    if private_key:
        try:
            derived = webpush.vapid_public_key_of(private_key)
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
        keys = webpush.generate_vapid_keys()
    subject = _string(values, "subject", "WebPush", required=False) or default_subject
    if not subject.startswith(("mailto:", "https://")):
        raise CredentialsInvalid('WebPush "subject" must be a mailto: or https:// URL.')
    return keys | {"subject": subject}


def kakao_credentials_clean(values: dict[str, Any]) -> dict[str, Any]:
    """NHN Cloud KakaoTalk Bizmessage: app key, secret key, sender key and the SMS fallback
    number."""
    fields = ("app_key", "secret_key", "sender_key", "fallback_send_no")
    _allowed(values, fields, "KakaoTalk")
    cleaned = {name: _string(values, name, "KakaoTalk") for name in fields[:3]}
    fallback = _string(values, "fallback_send_no", "KakaoTalk", required=False)
    return cleaned | ({"fallback_send_no": fallback} if fallback else {})
