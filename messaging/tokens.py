"""What a subscription's token must look like, per type."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from adapters.webpush import endpoint_problem

from .models import SubscriptionType

APNS_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}){32,100}$")
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_\-:.]{20,4096}$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


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
    token = token.strip()
    if problem := endpoint_problem(token, settings.WEB_PUSH_ALLOWED_HOSTS):
        raise ValidationError(problem)
    return token


_NORMALIZERS = {
    SubscriptionType.IOS_PUSH: _apns,
    SubscriptionType.ANDROID_PUSH: _fcm,
    SubscriptionType.EMAIL: _email,
    SubscriptionType.SMS: _phone,
    SubscriptionType.KAKAOTALK: _phone,
    SubscriptionType.IN_APP: _opaque,
    SubscriptionType.WEB_PUSH: _web_push_endpoint,
}


def normalize_token(kind: str, token: str) -> str:
    """The canonical form of a token of this type; raises ValidationError when malformed."""
    return _NORMALIZERS[kind](token)
