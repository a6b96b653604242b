"""The signed links of the preference page (`PUBLIC_URL/preferences/<token>`) and of the
one-click unsubscribe of a category's e-mail (`.../unsubscribe`, RFC 8058).

A token names the application and the recipient: the user, or the subscription when it
belongs to no user (its own preferences are the recipient's then); the one-click link's also
names the category and the channel it turns off. It is signed with SECRET_KEY and a salt of
its own (django.core.signing), so that it cannot be made for anyone else nor turned into
another link of the service, and it has no expiry: an unsubscribe link must keep working in
an e-mail read months later (mailbox providers and CAN-SPAM expect that); it stops working
when its recipient is erased, and all of them at once when SECRET_KEY changes. It grants no
more than the recipient's own preferences.

Compact, so that the URL stays short in a List-Unsubscribe header: ids as 22 characters of
base64url, parts joined by ".", then the signature.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

from core.channels import SPECS

_SALT = "signal.preferences"
_SEP = "."
_USER, _SUBSCRIPTION = "u", "s"
# A category's key as accounts.Category takes it; a channel's type is letters.
_KEY = re.compile(r"[a-z0-9_-]{1,64}\Z")


@dataclass(frozen=True)
class PreferenceToken:
    """What a token names: the application, the user or (without one) the subscription,
    and for a one-click link the category and the channel it turns off ("" for none)."""

    application_id: uuid.UUID
    user_id: uuid.UUID | None = None
    subscription_id: uuid.UUID | None = None
    category: str = ""
    channel: str = ""


def _signer() -> signing.Signer:
    return signing.Signer(salt=_SALT, sep=_SEP)


def _short(value: uuid.UUID | str) -> str:
    raw = value.bytes if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _long(text: str) -> uuid.UUID:
    if len(text) != 22:
        raise ValueError("not a short id")
    return uuid.UUID(bytes=base64.urlsafe_b64decode(text + "=="))


def preference_token(
    *,
    application_id,
    user_id=None,
    subscription_id=None,
    category: str = "",
    channel: str = "",
) -> str:
    """The signed token of a recipient's page: of the user when `user_id` is given, else of
    the subscription; with `category` (and optionally `channel`), of a one-click link."""
    if user_id is None and subscription_id is None:
        raise ValueError("a token names a user or a subscription")
    if channel and not category:
        raise ValueError("a channel only comes with a category")
    recipient = (
        _USER + _short(user_id) if user_id is not None else _SUBSCRIPTION + _short(subscription_id)
    )
    parts = [_short(application_id), recipient]
    if category:
        parts.append(category)
        if channel:
            parts.append(channel)
    return _signer().sign(_SEP.join(parts))


def preference_token_read(token: str) -> PreferenceToken | None:
    """What a token names, or None when it was not made here (tampered, truncated, made with
    another salt or key) or does not parse."""
    try:
        value = _signer().unsign(token)
    except signing.BadSignature:
        return None
    parts = value.split(_SEP)
    if not 2 <= len(parts) <= 4 or len(parts[1]) < 2:
        return None
    try:
        application_id = _long(parts[0])
        recipient = _long(parts[1][1:])
    except (ValueError, binascii.Error):
        return None
    kind = parts[1][0]
    if kind not in (_USER, _SUBSCRIPTION):
        return None
    category = parts[2] if len(parts) > 2 else ""
    channel = parts[3] if len(parts) > 3 else ""
    if (category and not _KEY.match(category)) or (channel and channel not in SPECS):
        return None
    return PreferenceToken(
        application_id=application_id,
        user_id=recipient if kind == _USER else None,
        subscription_id=recipient if kind == _SUBSCRIPTION else None,
        category=category,
        channel=channel,
    )


def preferences_url(token: str) -> str:
    """The preference page's URL under PUBLIC_URL."""
    return settings.PUBLIC_URL + reverse("preferences", kwargs={"token": token})


def one_click_url(token: str) -> str:
    """The one-click unsubscribe URL under PUBLIC_URL (List-Unsubscribe, RFC 8058)."""
    return settings.PUBLIC_URL + reverse("preferences-unsubscribe", kwargs={"token": token})
