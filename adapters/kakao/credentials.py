"""The stored form of an application's NHN Cloud KakaoTalk Bizmessage credentials."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

try:  # the contract's class, where the adapters' base has it
    from adapters.base import CredentialsInvalid  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - until adapters.base defines it

    class CredentialsInvalid(ValueError):  # type: ignore[no-redef]
        """Credentials that cannot work; the message is for a person."""


FIELDS = ("app_key", "secret_key", "sender_key", "fallback_send_no")
REQUIRED = FIELDS[:3]
# A sender number as NHN's SMS service registers it: digits only (a 1588-xxxx line, a
# 02-xxx-xxxx landline, a mobile). Hyphens and spaces people write are dropped.
_SEND_NO = re.compile(r"^[0-9]{3,13}$")


def clean_credentials(values: Mapping[str, Any], *, default_subject: str = "") -> dict[str, Any]:
    """`{"app_key", "secret_key", "sender_key"}` (one-line strings) and, for the SMS
    fallback, `"fallback_send_no"` (a sender number registered at NHN's SMS service).
    Raises CredentialsInvalid naming the field."""
    if not isinstance(values, Mapping):
        raise CredentialsInvalid("KakaoTalk credentials must be a JSON object.")
    unknown = sorted(str(name) for name in values if name not in FIELDS)
    if unknown:
        raise CredentialsInvalid(
            f"KakaoTalk credentials have no field {', '.join(unknown)}; known: {', '.join(FIELDS)}."
        )
    cleaned = {name: _line(values, name) for name in REQUIRED}
    send_no = values.get("fallback_send_no")
    if send_no not in (None, ""):
        if not isinstance(send_no, str):
            raise CredentialsInvalid(
                "KakaoTalk credentials: 'fallback_send_no' must be a sender number (text)."
            )
        digits = re.sub(r"[\s-]", "", send_no)
        if not _SEND_NO.match(digits):
            raise CredentialsInvalid(
                "KakaoTalk credentials: 'fallback_send_no' must be a sender number of 3 to 13 "
                "digits, as registered at NHN Cloud's SMS service (e.g. 15881234)."
            )
        cleaned["fallback_send_no"] = digits
    return cleaned


def _line(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CredentialsInvalid(f"KakaoTalk credentials need {name!r}.")
    if not isinstance(value, str) or any(char in value for char in "\x00\r\n"):
        raise CredentialsInvalid(f"KakaoTalk credentials: {name!r} must be one line of text.")
    return value.strip()
