"""The rules of a subscription's profile fields (tags, language, country, time zone, device),
once: the API's serializers call them for their fields, and the subscription services call
them for whatever calls the services (the admin's form among them). Each rule returns the
value as stored (whitespace trimmed, the country upper-case) or raises FieldInvalid with
the messages the API answers with."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from core.countries import country_code_pattern
from core.exceptions import ValidationFailed
from core.validation import text_problem

MAX_TAGS = 100
MAX_TAG_NAME_LENGTH = 64
MAX_TAG_VALUE_LENGTH = 255
MAX_LANGUAGE_LENGTH = 16
MAX_TIMEZONE_LENGTH = 64
# Countries: the assigned ISO 3166-1 codes in any case, spelled out so that the OpenAPI
# document refuses what the server refuses.
COUNTRY_PATTERN = country_code_pattern()
LANGUAGE_PATTERN = r"^[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*$"
DEVICE_FIELDS = {"model": 100, "os": 100, "app_version": 50, "sdk_version": 50}

LANGUAGE_INVALID = "A language is a BCP 47 tag such as 'ko' or 'en-US'."
COUNTRY_INVALID = "A country is an ISO 3166-1 alpha-2 code."
TAG_NAME_INVALID = f"A tag name is 1-{MAX_TAG_NAME_LENGTH} characters."
# The words of DRF's fields, which the API answered with before these rules moved here.
NOT_NULL = "This field may not be null."
NOT_BLANK = "This field may not be blank."
NOT_A_STRING = "Must be a JSON string."

_COUNTRY = re.compile(COUNTRY_PATTERN)
_LANGUAGE = re.compile(LANGUAGE_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")


class FieldInvalid(ValueError):
    """A value breaks its field's rule; `detail` is a list of messages, or for an object a
    mapping of its keys to theirs."""

    def __init__(self, detail: list[str] | dict[str, Any]):
        super().__init__(detail)
        self.detail = detail


def _text(value: Any, *, max_length: int | None, allow_blank: bool = True) -> str:
    """A string as DRF's CharField takes it: trimmed, within `max_length`, storable."""
    if value is None:
        raise FieldInvalid([NOT_NULL])
    if not isinstance(value, str):
        raise FieldInvalid([NOT_A_STRING])
    value = value.strip()
    if not value:
        if not allow_blank:
            raise FieldInvalid([NOT_BLANK])
        return ""
    problems = []
    if max_length is not None and len(value) > max_length:
        problems.append(f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in value:
        problems.append("Null characters are not allowed.")
    if not value.isascii() and (surrogate := _SURROGATE.search(value)):
        problems.append(f"Surrogate characters are not allowed: U+{ord(surrogate.group()):X}.")
    if problems:
        raise FieldInvalid(problems)
    return value


def language_clean(value: Any) -> str:
    value = _text(value, max_length=MAX_LANGUAGE_LENGTH)
    if value and not _LANGUAGE.match(value):
        raise FieldInvalid([LANGUAGE_INVALID])
    return value


def country_clean(value: Any) -> str:
    value = _text(value, max_length=None)
    if value and not _COUNTRY.match(value):
        raise FieldInvalid([COUNTRY_INVALID])
    return value.upper()


def timezone_clean(value: Any) -> str:
    """An IANA time zone name such as "Asia/Seoul", or ""."""
    value = _text(value, max_length=MAX_TIMEZONE_LENGTH)
    if value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise FieldInvalid([f"Unknown time zone {value!r}."]) from exc
    return value


def device_clean(value: Any) -> dict[str, str]:
    """{"model", "os", "app_version", "sdk_version"}, each optional text."""
    if value is None:
        raise FieldInvalid([NOT_NULL])
    if not isinstance(value, Mapping):
        raise FieldInvalid(
            {
                "non_field_errors": [
                    f"Invalid data. Expected a dictionary, but got {type(value).__name__}."
                ]
            }
        )
    errors: dict[str, list[str]] = {
        key: ["Unknown field."] for key in sorted(set(value) - set(DEVICE_FIELDS))
    }
    errors |= {
        key: [NOT_A_STRING]
        for key, item in value.items()
        if key in DEVICE_FIELDS and item is not None and not isinstance(item, str)
    }
    if errors:
        raise FieldInvalid(errors)
    cleaned = {}
    for key, max_length in DEVICE_FIELDS.items():
        if key in value:
            try:
                cleaned[key] = _text(value[key], max_length=max_length)
            except FieldInvalid as exc:
                errors[key] = exc.detail
    if errors:
        raise FieldInvalid(errors)
    return cleaned


def tags_clean(value: Any, *, allow_removal: bool = True) -> dict[str, str | None]:
    """Tag name -> string; with `allow_removal`, a value of None or "" removes the tag."""
    if not isinstance(value, Mapping):
        raise FieldInvalid(
            [f'Expected a dictionary of items but got type "{type(value).__name__}".']
        )
    for key, item in value.items():
        if item is not None and not isinstance(item, str):
            # A tag is a string as sent (5 is not "5"), or it is refused.
            raise FieldInvalid([f"{key!r}: {NOT_A_STRING}"])
    errors: dict[str, Any] = {}
    cleaned: dict[str, str | None] = {}
    for key, item in value.items():
        if item is None and allow_removal:
            cleaned[str(key)] = None
            continue
        try:
            cleaned[str(key)] = _text(
                item, max_length=MAX_TAG_VALUE_LENGTH, allow_blank=allow_removal
            )
        except FieldInvalid as exc:
            errors[str(key)] = exc.detail
    if errors:
        raise FieldInvalid(errors)
    if len(cleaned) > MAX_TAGS:
        raise FieldInvalid([f"At most {MAX_TAGS} tags."])
    for key in cleaned:
        if not key or len(key) > MAX_TAG_NAME_LENGTH:
            raise FieldInvalid([TAG_NAME_INVALID])
        if problem := text_problem(key):
            raise FieldInvalid([f"The tag name {key!r} {problem}."])
    return cleaned


def tags_merge(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """`current` with cleaned `changes` applied: a value of None or "" removes its tag."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


PROFILE_RULES: dict[str, Any] = {
    "language": language_clean,
    "country": country_clean,
    "timezone": timezone_clean,
    "device": device_clean,
}


def profile_clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The given profile fields and tags (a change: a tag of None or "" is removed), each
    by its rule. Raises ValidationFailed naming every field that breaks its rule."""
    cleaned, errors = dict(fields), {}
    for name, value in fields.items():
        rule = tags_clean if name == "tags" else PROFILE_RULES.get(name)
        if rule is None or value is None:  # None: not given
            continue
        try:
            cleaned[name] = rule(value)
        except FieldInvalid as exc:
            errors[name] = exc.detail
    if errors:
        raise ValidationFailed(details=errors)
    return cleaned
