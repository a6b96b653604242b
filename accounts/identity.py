"""Identity verification: with it on, a client-key call that acts for a user proves it with
`X-User-Hash` = hex(HMAC-SHA256(identity_secret, external_user_id)), computed by the
application's backend (docs/channels.md, "Identity verification"). The previous secret stays
valid for IDENTITY_SECRET_GRACE_SECONDS after a rotation."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, Application
from core.exceptions import AuthenticationFailed

HEADER = "HTTP_X_USER_HASH"


def user_hash(secret: str, external_user_id: str) -> str:
    """What the application's backend computes for a user."""
    return hmac.new(secret.encode(), external_user_id.encode(), hashlib.sha256).hexdigest()


def _secrets(application: Application) -> list[str]:
    valid = [application.identity_secret] if application.identity_secret else []
    rotated = application.identity_secret_rotated_at
    grace = settings.IDENTITY_SECRET_GRACE_SECONDS
    if (
        application.identity_secret_previous
        and rotated is not None
        and (timezone.now() - rotated).total_seconds() < grace
    ):
        valid.append(application.identity_secret_previous)
    return valid


def identity_required(*, api_key: ApiKey) -> bool:
    """Whether this key's calls acting for a user must prove it: a client key of an
    application with identity verification on."""
    return api_key.scope == ApiKey.Scope.CLIENT and api_key.application.identity_verification


def identity_verify(*, api_key: ApiKey, external_user_id: str | None, given: str | None) -> None:
    """Raises AuthenticationFailed unless the call may act for `external_user_id` (None: the
    subscription has no user, which a client key cannot prove) with the hash it `given`.
    Server keys and applications without identity verification always may."""
    if not identity_required(api_key=api_key):
        return
    if not given:
        raise AuthenticationFailed(
            "Identity verification is on: the X-User-Hash header is required."
        )
    if external_user_id is None:
        raise AuthenticationFailed(
            "Identity verification is on and the subscription belongs to no user."
        )
    given = given.strip().lower()
    if not given.isascii():  # compare_digest compares ASCII text only
        raise AuthenticationFailed("The X-User-Hash header does not match the user.")
    for secret in _secrets(api_key.application):
        if hmac.compare_digest(user_hash(secret, external_user_id), given):
            return
    raise AuthenticationFailed("The X-User-Hash header does not match the user.")
