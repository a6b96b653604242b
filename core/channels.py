"""The channels and their content parts: which part of a message each channel reads, and the
one check of parts that the API, the templates, the campaigns and the admin all use.

Content is `title`, `body` and `data` for every channel; a message, template or campaign may
add per-channel parts (`{"email": {"subject", "html", "from_name"}, "sms": {"text"}, ...}`),
each optional. A stored message keeps only the part of its own channel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from core.validation import MAX_JSON_BYTES, InputInvalid, check_json, check_text

IOS_PUSH = "iOSPush"
ANDROID_PUSH = "AndroidPush"
EMAIL = "Email"
SMS = "SMS"
KAKAOTALK = "KakaoTalk"
IN_APP = "InAppMessage"
WEB_PUSH = "WebPush"

CHANNELS = (IOS_PUSH, ANDROID_PUSH, EMAIL, SMS, KAKAOTALK, IN_APP, WEB_PUSH)

# The part each channel reads; push to devices has none (title, body and data are its content).
PART_OF_CHANNEL = {
    EMAIL: "email",
    SMS: "sms",
    KAKAOTALK: "kakao",
    WEB_PUSH: "web_push",
    IN_APP: "in_app",
}
PART_NAMES = tuple(PART_OF_CHANNEL.values())

MAX_SUBJECT_LENGTH = 998  # RFC 5322's line limit: a subject longer than this cannot be sent
MAX_HTML_LENGTH = 200_000
MAX_NAME_LENGTH = 200
MAX_SMS_LENGTH = 1600  # Twilio's limit for one message (10 segments of 160 GSM-7 characters)
MAX_URL_LENGTH = 2048
MAX_KAKAO_TEXT_LENGTH = 1000
MAX_KAKAO_BUTTONS = 5


def _text(max_length: int, *, single_line: bool = False):
    def check(value: Any, field: str) -> Any:
        check_text(value, field=field, max_length=max_length)
        if single_line and ("\r" in value or "\n" in value):
            raise InputInvalid(f"{field} must be one line (no line breaks).", field=field)
        return value

    return check


# An absolute http(s) URL as RFC 3986 spells it: a host name with an optional port, then path,
# query and fragment of its characters (anything else percent-encoded, non-ASCII included).
# The OpenAPI document states the same pattern (core.openapi).
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?"
    rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?$"
)
_URL = re.compile(URL_PATTERN)


# What a rendered URL keeps as it is; anything else (a space, non-ASCII text from a variable)
# is percent-encoded, as a browser does with what is typed into its address bar.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def rendered_urls_encoded(parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`parts` as rendered from a template, with each URL field's variable text
    percent-encoded (`https://shop.example/{{slug}}` with slug "summer sale" becomes
    `https://shop.example/summer%20sale`)."""
    encoded = {}
    for name, part in parts.items():
        urls = [key for key, check in PART_FIELDS.get(name, {}).items() if check is _url]
        if isinstance(part, dict) and any(isinstance(part.get(key), str) for key in urls):
            part = {
                key: quote(value, safe=_URL_SAFE)
                if key in urls and isinstance(value, str) and "\x00" not in value
                else value
                for key, value in part.items()
            }
        encoded[name] = part
    return encoded


def _url(value: Any, field: str) -> Any:
    check_text(value, field=field, max_length=MAX_URL_LENGTH)
    if not _URL.fullmatch(value):
        raise InputInvalid(
            f"{field} must be an absolute http(s) URL (other characters percent-encoded).",
            field=field,
        )
    return value


def _json(value: Any, field: str) -> Any:
    return check_json(value, field=field, max_bytes=MAX_JSON_BYTES)


def _variables(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        raise InputInvalid(f"{field} must be an object of strings.", field=field)
    for key, item in value.items():
        check_text(key, field=f"{field}.{key}", max_length=100)
        check_text(item, field=f"{field}.{key}", max_length=MAX_KAKAO_TEXT_LENGTH)
    return value


def _buttons(value: Any, field: str) -> Any:
    if not isinstance(value, list) or len(value) > MAX_KAKAO_BUTTONS:
        raise InputInvalid(
            f"{field} must be a list of at most {MAX_KAKAO_BUTTONS} buttons.", field=field
        )
    for index, button in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(button, dict):
            raise InputInvalid(f"{where} must be an object.", field=where)
        _json(button, where)
    return value


# part -> field -> check(value, field path); a field not listed is refused.
PART_FIELDS: dict[str, dict[str, Any]] = {
    "email": {
        "subject": _text(MAX_SUBJECT_LENGTH, single_line=True),
        "html": _text(MAX_HTML_LENGTH),
        "from_name": _text(MAX_NAME_LENGTH, single_line=True),
    },
    "sms": {"text": _text(MAX_SMS_LENGTH)},
    "kakao": {
        "template_code": _text(100, single_line=True),
        "variables": _variables,
        "buttons": _buttons,
        "fallback_text": _text(MAX_KAKAO_TEXT_LENGTH),
    },
    "web_push": {"url": _url, "icon": _url},
    "in_app": {"image_url": _url, "action_url": _url},
}


def _template_url(value: Any, field: str) -> Any:
    # A template's URL with a variable in it is checked once rendered.
    if isinstance(value, str) and "{{" in value:
        return check_text(value, field=field, max_length=MAX_URL_LENGTH)
    return _url(value, field)


def part_check(
    name: str, value: Any, *, field: str | None = None, templated: bool = False
) -> dict[str, Any]:
    """One channel part, checked: an object of its known fields, each within its limits.
    Raises InputInvalid naming the field (`email.subject`). `templated`: the part of a
    template, whose URLs may hold `{{ }}` variables (checked again once rendered)."""
    field = field or name
    if not isinstance(value, dict):
        raise InputInvalid(f"{field} must be an object.", field=field)
    known = PART_FIELDS[name]
    for key, item in value.items():
        if key not in known:
            raise InputInvalid(
                f"{field} has no field {key!r}; known: {', '.join(known)}.", field=f"{field}.{key}"
            )
        check = known[key]
        if templated and check is _url:
            check = _template_url
        check(item, f"{field}.{key}")
    return value


def parts_check(
    parts: Mapping[str, Any] | None, *, templated: bool = False
) -> dict[str, dict[str, Any]]:
    """Every part of `{"email": {...}, "sms": {...}}`, checked (part_check); empty parts (`{}`)
    are left out."""
    if parts is not None and not isinstance(parts, Mapping):
        raise InputInvalid(
            f"The channel parts are an object: part name ({', '.join(PART_NAMES)}) -> part.",
            field="parts",
        )
    checked = {}
    for name, value in (parts or {}).items():
        if name not in PART_FIELDS:
            raise InputInvalid(
                f"Unknown channel part {name!r}; known: {', '.join(PART_NAMES)}.", field=name
            )
        if value != {}:
            checked[name] = part_check(name, value, templated=templated)
    return checked


def part_for(channel: str, parts: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part a message to `channel` carries of `parts` ({} when it has none)."""
    if not parts:
        return {}
    name = PART_OF_CHANNEL.get(channel)
    return (parts.get(name) or {}) if name else {}
