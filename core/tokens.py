"""What a subscription's token looks like, per kind of token: each rule normalizes a token (or
raises django's ValidationError) and states its canonical form as JSON Schema keywords, so the
OpenAPI document takes what the server takes. The channels (core.channels) name their rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from core.validation import NON_BLANK

APNS_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}){32,100}$")
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_\-:.]{20,4096}$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# What Django's EmailValidator takes, narrowed to ASCII.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


@dataclass(frozen=True)
class TokenRule:
    """A kind of token: `rule(token)` is its canonical form (ValidationError when malformed);
    `schema()` the JSON Schema keywords of that form (a function: it may read settings);
    `help` says it in one sentence.
    The normalizers also take what they strip: surrounding whitespace, spaces and <> in APNs
    tokens, separators in phone numbers."""

    normalize: Callable[[str], str]
    schema: Callable[[], dict[str, Any]]
    help: str

    def __call__(self, token: str) -> str:
        return self.normalize(token)


def _apns(token: str) -> str:
    token = token.strip().lower().replace(" ", "").strip("<>")
    if not APNS_TOKEN.fullmatch(token):
        raise ValidationError("An APNs device token is an even number (64 or more) of hex digits.")
    return token


def _fcm(token: str) -> str:
    token = token.strip()
    if not FCM_TOKEN.fullmatch(token):
        raise ValidationError(
            "An FCM registration token is 20-4096 characters of letters, digits, '-', '_', ':' "
            "or '.'."
        )
    return token


def _email(token: str) -> str:
    token = token.strip()
    validate_email(token)
    local, _, domain = token.rpartition("@")
    return f"{local}@{domain.lower()}"


def _phone(token: str) -> str:
    token = re.sub(r"[\s\-().]", "", token)
    if not E164.fullmatch(token):
        raise ValidationError("A phone number must be in E.164 form, e.g. +821012345678.")
    return token


def _opaque(token: str) -> str:
    token = token.strip()
    if not 1 <= len(token) <= 255:
        raise ValidationError("An in-app subscription id is 1-255 characters.")
    return token


def _web_push_endpoint(token: str) -> str:
    from django.conf import settings

    from adapters.webpush import endpoint_problem

    token = token.strip()
    if problem := endpoint_problem(token, settings.WEB_PUSH_ALLOWED_HOSTS):
        raise ValidationError(problem)
    return token


def web_push_endpoint_pattern(allowed_hosts: Iterable[str]) -> str:
    """A pattern of endpoints adapters.webpush.endpoint_problem accepts, for the schema: https
    on a listed host or a subdomain of a listed `.suffix` (http too for a listed 127.0.0.1),
    then a path of URL characters."""
    label = "[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
    hosts = []
    for entry in allowed_hosts:
        entry = str(entry).strip().lower().rstrip(".")
        if entry == "127.0.0.1":
            hosts.append(r"https?://127\.0\.0\.1(?::[1-9][0-9]{0,3})?")
        elif entry.startswith("."):
            hosts.append(f"https://(?:{label}\\.){{1,4}}{re.escape(entry[1:])}")
        elif entry:
            hosts.append(f"https://{re.escape(entry)}")
    return f"^(?:{'|'.join(hosts)})(?:/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?$"


def _web_push_schema() -> dict[str, Any]:
    from django.conf import settings

    return {
        "format": "uri",
        "pattern": web_push_endpoint_pattern(settings.WEB_PUSH_ALLOWED_HOSTS),
        "maxLength": 2048,
    }


APNS = TokenRule(
    _apns,
    lambda: {"pattern": APNS_TOKEN.pattern},
    "The APNs device token: an even number (64 to 200) of hex digits.",
)
FCM = TokenRule(_fcm, lambda: {"pattern": FCM_TOKEN.pattern}, "The FCM registration token.")
EMAIL = TokenRule(
    _email, lambda: {"pattern": EMAIL_PATTERN, "maxLength": 254}, "An e-mail address."
)
PHONE = TokenRule(
    _phone,
    lambda: {"pattern": E164.pattern},
    "A phone number in E.164 form, e.g. +821012345678.",
)
OPAQUE = TokenRule(
    _opaque,
    lambda: {"pattern": NON_BLANK, "maxLength": 255},
    "The app installation's id (1-255 characters).",
)
WEB_PUSH_ENDPOINT = TokenRule(
    _web_push_endpoint,
    _web_push_schema,
    "The browser's push subscription (PushSubscription.toJSON()): its endpoint URL, on a host "
    'of a known push service (WEB_PUSH_ALLOWED_HOSTS), is the token, and its keys {"p256dh", '
    '"auth"} come with it.',
)
