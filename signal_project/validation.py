"""Checks of untrusted text before it is stored."""

from __future__ import annotations

from typing import Any

NUL_MESSAGE = "Null characters are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate characters are not allowed."


def untrusted_text_problem(value: Any) -> str | None:
    """Why a string, or any string inside a JSON value (keys too), cannot be stored, else None.

    PostgreSQL refuses NUL in text and jsonb, and UTF-8 cannot encode a lone surrogate, which
    a JSON document can carry as a `\\ud800` escape: both would fail the write, not the form."""
    if isinstance(value, str):
        if "\x00" in value:
            return NUL_MESSAGE
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_MESSAGE
        return None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        return None
    for item in items:
        problem = untrusted_text_problem(item)
        if problem:
            return problem
    return None
