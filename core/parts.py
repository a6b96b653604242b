"""The fields of the channels' content parts: each `PartField` is one rule written once, as the
server's check and as the JSON Schema the OpenAPI document states for it, so the document takes
exactly what the server takes. The channels (core.channels) list their part's fields.

A template's part differs in one way: a URL field with a `{{ }}` variable in it is checked once
rendered, so until then it is any storable text; every other field is the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.validation import InputInvalid, check_text

MAX_SUBJECT_LENGTH = 998  # RFC 5322's line limit: a subject longer than this cannot be sent
MAX_HTML_LENGTH = 200_000
MAX_NAME_LENGTH = 200
MAX_SMS_LENGTH = 1600  # Twilio's limit for one message (10 segments of 160 GSM-7 characters)
MAX_URL_LENGTH = 2048
MAX_KAKAO_TEXT_LENGTH = 1000
MAX_KAKAO_BUTTONS = 5
MAX_KAKAO_VARIABLE_NAME = 100
MAX_BUTTON_KEY_LENGTH = 50

# Text PostgreSQL stores has no NUL (core.validation); one-line text no line break either.
STORABLE = r"^[^\x00]*$"
ONE_LINE = r"^[^\r\n\x00]*$"

# An absolute http(s) URL as RFC 3986 spells it: a host name with an optional port, then path,
# query and fragment of its characters (anything else percent-encoded, non-ASCII included).
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?"
    rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?$"
)
_URL = re.compile(URL_PATTERN)
# A template's text with a variable in it (and no NUL).
TEMPLATED_PATTERN = r"^[^\x00]*\{\{[^\x00]*$"

Check = Callable[[Any, str], Any]


@dataclass(frozen=True)
class PartField:
    """One field of a channel part. `check(value, field)` returns the value or raises
    InputInvalid naming `field`; `schema` is the same rule in JSON Schema. `url`: a URL, which
    in a template may hold `{{ }}` variables (checked once rendered) and is percent-encoded
    once rendered (core.channels.rendered_urls_encoded)."""

    check: Check
    schema: Mapping[str, Any]
    url: bool = False
    templated_check: Check | None = None
    templated_schema: Mapping[str, Any] | None = None

    def checked(self, value: Any, field: str, *, templated: bool = False) -> Any:
        """`value` checked as a message's (or with `templated`, a template's) field."""
        if templated and self.templated_check is not None:
            return self.templated_check(value, field)
        return self.check(value, field)

    def json_schema(self, *, templated: bool = False) -> dict[str, Any]:
        """The JSON Schema of the field (a fresh copy)."""
        if templated and self.templated_schema is not None:
            return _copied(self.templated_schema)
        return _copied(self.schema)


def _copied(schema: Any) -> Any:
    if isinstance(schema, Mapping):
        return {key: _copied(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_copied(value) for value in schema]
    return schema


def text(max_length: int, *, single_line: bool = False) -> PartField:
    """Storable text of at most `max_length` characters (and with `single_line`, one line)."""

    def check(value: Any, field: str) -> Any:
        check_text(value, field=field, max_length=max_length)
        if single_line and ("\r" in value or "\n" in value):
            raise InputInvalid(f"{field} must be one line (no line breaks).", field=field)
        return value

    pattern = ONE_LINE if single_line else STORABLE
    return PartField(check, {"type": "string", "maxLength": max_length, "pattern": pattern})


def _url_check(value: Any, field: str) -> Any:
    check_text(value, field=field, max_length=MAX_URL_LENGTH)
    if not _URL.fullmatch(value):
        raise InputInvalid(
            f"{field} must be an absolute http(s) URL (other characters percent-encoded).",
            field=field,
        )
    return value


def _templated_url_check(value: Any, field: str) -> Any:
    # A template's URL with a variable in it is checked once rendered.
    if isinstance(value, str) and "{{" in value:
        return check_text(value, field=field, max_length=MAX_URL_LENGTH)
    return _url_check(value, field)


_URL_SCHEMA = {
    "type": "string",
    "maxLength": MAX_URL_LENGTH,
    "format": "uri",
    "pattern": URL_PATTERN,
}


def url() -> PartField:
    """An absolute http(s) URL (in a template, or text with a `{{ }}` variable)."""
    return PartField(
        _url_check,
        _URL_SCHEMA,
        url=True,
        templated_check=_templated_url_check,
        templated_schema={
            "type": "string",
            "maxLength": MAX_URL_LENGTH,
            "anyOf": [
                {"pattern": TEMPLATED_PATTERN},
                {"format": "uri", "pattern": URL_PATTERN},
            ],
        },
    )


def _variables_check(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        raise InputInvalid(f"{field} must be an object of strings.", field=field)
    for key, item in value.items():
        check_text(key, field=f"{field}.{key}", max_length=MAX_KAKAO_VARIABLE_NAME)
        check_text(item, field=f"{field}.{key}", max_length=MAX_KAKAO_TEXT_LENGTH)
    return value


def variables() -> PartField:
    """An object of strings: variable name -> its text."""
    return PartField(
        _variables_check,
        {
            "type": "object",
            "propertyNames": {"maxLength": MAX_KAKAO_VARIABLE_NAME, "pattern": STORABLE},
            "additionalProperties": {
                "type": "string",
                "maxLength": MAX_KAKAO_TEXT_LENGTH,
                "pattern": STORABLE,
            },
        },
    )


def _buttons_check(value: Any, field: str) -> Any:
    if not isinstance(value, list) or len(value) > MAX_KAKAO_BUTTONS:
        raise InputInvalid(
            f"{field} must be a list of at most {MAX_KAKAO_BUTTONS} buttons.", field=field
        )
    for index, button in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(button, dict):
            raise InputInvalid(f"{where} must be an object of strings.", field=where)
        for key, item in button.items():
            try:
                check_text(key, field="A key", max_length=MAX_BUTTON_KEY_LENGTH)
                check_text(item, field=f"Its {key!r}", max_length=MAX_URL_LENGTH)
            except InputInvalid as exc:
                raise InputInvalid(f"{where}: {exc.message}", field=where) from None
    return value


def buttons() -> PartField:
    """A list of at most MAX_KAKAO_BUTTONS buttons, each an object of strings (`type`, `name`,
    `url_mobile`, ...)."""
    return PartField(
        _buttons_check,
        {
            "type": "array",
            "maxItems": MAX_KAKAO_BUTTONS,
            "items": {
                "type": "object",
                "propertyNames": {"maxLength": MAX_BUTTON_KEY_LENGTH, "pattern": STORABLE},
                "additionalProperties": {
                    "type": "string",
                    "maxLength": MAX_URL_LENGTH,
                    "pattern": STORABLE,
                },
            },
        },
    )
