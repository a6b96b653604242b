"""The stored form of an application's NHN Cloud KakaoTalk Bizmessage credentials."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from adapters.base import CredentialsInvalid, credential_fields_allowed, credential_text

FIELDS = ("app_key", "secret_key", "sender_key", "fallback_send_no")
REQUIRED = FIELDS[:3]
# A sender number as NHN's SMS service registers it, once the hyphens and spaces people write
# are dropped: E.164, or a Korean number of digits (02-..., 010-..., 0505-... and the
# 15xx-18xx service numbers).
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_KOREAN_NUMBER = re.compile(r"^(0[0-9]{8,10}|1[5-9][0-9]{6})$")


def clean_credentials(values: Mapping[str, Any], *, default_subject: str = "") -> dict[str, Any]:
    """`{"app_key", "secret_key", "sender_key"}` (one-line strings) and, for the SMS
    fallback, `"fallback_send_no"` (a sender number registered at NHN's SMS service).
    Raises CredentialsInvalid naming the field."""
    if not isinstance(values, Mapping):
        raise CredentialsInvalid("KakaoTalk credentials must be a JSON object.")
    credential_fields_allowed(values, FIELDS, "KakaoTalk")
    cleaned = {}
    for name in REQUIRED:
        cleaned[name] = credential_text(values, name, "KakaoTalk")
        if not cleaned[name]:  # only spaces
            raise CredentialsInvalid(f"KakaoTalk credentials need {name!r}.")
    send_no = credential_text(values, "fallback_send_no", "KakaoTalk", required=False)
    send_no = re.sub(r"[\s-]", "", send_no)
    if send_no:
        if not (_E164.match(send_no) or _KOREAN_NUMBER.match(send_no)):
            raise CredentialsInvalid(
                'KakaoTalk "fallback_send_no" must be an E.164 number (+8215881234) or a Korean '
                "number (15881234, 02-1234-5678), as registered at NHN Cloud's SMS service."
            )
        cleaned["fallback_send_no"] = send_no
    return cleaned
