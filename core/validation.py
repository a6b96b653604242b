"""Checks of untrusted text and JSON values, shared by the API's serializers, the services the
admin calls, and the template renderer.

PostgreSQL stores neither a NUL character (U+0000: `text` and `jsonb` refuse it) nor a lone
UTF-16 surrogate (U+D800..U+DFFF: not encodable as UTF-8), and walking a value nested
thousands of levels deep exhausts Python's recursion limit; so text and JSON from outside pass
these checks before they are stored or rendered. Plain functions: each returns the value
unchanged or raises InputInvalid, which the API answers as `400 validation_error` naming the
field.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_JSON_DEPTH = 32  # nested objects/arrays in one stored JSON value
MAX_JSON_BYTES = 64 * 1024  # data, variables, data templates, targeting criteria

# What Python's str.strip() removes (a trimmed string field refuses text of only these), spelled
# out for JSON Schema patterns, whose `\s` (ECMA 262) is another set.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NON_BLANK = f"[^{WHITESPACE}]"  # some text besides whitespace
BLANK = f"^[{WHITESPACE}]*$"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NUL = "contains a NUL character (U+0000), which cannot be stored"


class InputInvalid(ValueError):
    """A value from outside breaks a rule: `message` says which, for `field`."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def errors(self) -> dict[str, list[str]]:
        """The API's validation details: field -> messages."""
        return {self.field: [self.message]}


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text (as the end of a sentence), or None."""
    if value.isascii():
        return _NUL if "\x00" in value else None
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return _NUL
    return (
        f"contains a lone UTF-16 surrogate (U+{ord(found.group()):04X}), which is not a character"
    )


def check_text(value: Any, *, field: str, max_length: int | None = None) -> str:
    """`value` if it is a string that can be stored (and at most `max_length` characters)."""
    if not isinstance(value, str):
        raise InputInvalid(f"{field} must be a string.", field=field)
    if problem := text_problem(value):
        raise InputInvalid(f"{field} {problem}.", field=field)
    if max_length is not None and len(value) > max_length:
        raise InputInvalid(
            f"{field} is {len(value)} characters; the limit is {max_length}.", field=field
        )
    return value


def _where(parent: tuple, key: Any) -> tuple:
    return parent if key is _ROOT else (*parent, key)


def _path(field: str, parts: tuple) -> str:
    text = field
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


_ROOT = object()
_SCALAR_SIZES = {type(None): 4, bool: 5}


def check_json(
    value: Any,
    *,
    field: str,
    max_depth: int = MAX_JSON_DEPTH,
    max_bytes: int | None = None,
) -> Any:
    """`value` if it is JSON that PostgreSQL can store: objects with string keys, arrays,
    strings without NUL or lone surrogates (keys too), finite numbers, booleans and null;
    nested at most `max_depth` objects/arrays deep, and at most `max_bytes` long written as
    compact JSON (counted without escapes). One iterative walk, no recursion."""
    size = 0
    # (item, path of its container, its key in the container, depth of its container);
    # paths are built only for containers, so a flat object costs no tuples.
    todo: list[tuple[Any, tuple, Any, int]] = [(value, (), _ROOT, 0)]
    while todo:
        item, parent, key, depth = todo.pop()
        kind = type(item)
        if kind is str:
            size += len(item) + 2
            if problem := text_problem(item):
                where = _path(field, _where(parent, key))
                raise InputInvalid(f"The string at {where} {problem}.", field=field)
        elif kind is dict or kind is list:
            path = _where(parent, key)
            if depth >= max_depth:
                raise InputInvalid(
                    f"{_path(field, path)} is nested more than {max_depth} levels deep.",
                    field=field,
                )
            size += 2 + len(item)
            if kind is dict:
                for name, child in item.items():
                    if type(name) is not str:
                        raise InputInvalid(
                            f"{_path(field, path)} has a key that is not a string.", field=field
                        )
                    size += len(name) + 3
                    if problem := text_problem(name):
                        raise InputInvalid(f"A key in {_path(field, path)} {problem}.", field=field)
                    todo.append((child, path, name, depth + 1))
            else:
                todo.extend((child, path, index, depth + 1) for index, child in enumerate(item))
        elif kind is int:
            size += item.bit_length() * 3 // 10 + 2  # about its digits (and a sign)
        elif kind is float:
            if not math.isfinite(item):
                where = _path(field, _where(parent, key))
                raise InputInvalid(f"The number at {where} is not finite.", field=field)
            size += 24
        elif kind in _SCALAR_SIZES:
            size += _SCALAR_SIZES[kind]
        else:
            where = _path(field, _where(parent, key))
            raise InputInvalid(f"The value at {where} is not a JSON value.", field=field)
        if max_bytes is not None and size > max_bytes:
            raise InputInvalid(
                f"{field} is larger than {max_bytes} bytes as JSON (the limit).", field=field
            )
    return value


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether `value` nests more than `max_depth` objects/arrays; iterative."""
    if type(value) is not dict and type(value) is not list:
        return False
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > max_depth:
            return True
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                todo.append((child, depth + 1))
    return False


# The admin's form errors. The NUL one is worded as Django's own form fields word it
# (ProhibitNullCharactersValidator), so a page says it one way whichever field caught it.
NUL_MESSAGE = "Null characters are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate characters are not allowed."


def untrusted_text_problem(value: Any) -> str | None:
    """For a form: why a string, or any string inside a JSON value (keys too), cannot be
    stored, or a JSON value nested too deep; None when it can. Iterative, as check_json."""
    if (type(value) is dict or type(value) is list) and json_depth_exceeds(value, MAX_JSON_DEPTH):
        return f"Nested more than {MAX_JSON_DEPTH} levels deep."
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return NUL_MESSAGE if problem == _NUL else SURROGATE_MESSAGE
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)
    return None
