"""The checks of untrusted text and JSON that the API, the services and the renderer share."""

from __future__ import annotations

import pytest

from core.validation import (
    MAX_JSON_DEPTH,
    InputInvalid,
    check_json,
    check_text,
    json_depth_exceeds,
    text_problem,
)


def nested(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("text", ["", "plain", "한국어 ✓", "tab\tnewline\n", "\U0001f600"])
def test_storable_text_passes_unchanged(text):
    assert text_problem(text) is None
    assert check_text(text, field="title") is text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a\x00b", "NUL character (U+0000)"),
        ("한\x00", "NUL character (U+0000)"),
        ("\ud800", "lone UTF-16 surrogate (U+D800)"),
        ("x\udfffy", "lone UTF-16 surrogate (U+DFFF)"),
    ],
)
def test_text_with_a_nul_or_a_lone_surrogate_is_refused_naming_the_field(text, words):
    with pytest.raises(InputInvalid) as caught:
        check_text(text, field="title")

    assert caught.value.field == "title"
    assert words in caught.value.message
    assert caught.value.errors == {"title": [caught.value.message]}


def test_text_over_its_length_is_refused_with_both_numbers():
    with pytest.raises(InputInvalid, match="title is 11 characters; the limit is 10"):
        check_text("x" * 11, field="title", max_length=10)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"screen": "home", "n": 1, "f": 1.5, "ok": True, "none": None, "list": [1, "a", {}]},
        "top-level string",
        nested(MAX_JSON_DEPTH),
        {"big": 10**100, "neg": -5},
    ],
)
def test_storable_json_passes_unchanged(value):
    assert check_json(value, field="data", max_bytes=64 * 1024) is value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"a": "x\x00"}, "The string at data.a contains a NUL"),
        ({"a": [{"b": "\ud800"}]}, "The string at data.a[0].b contains a lone UTF-16 surrogate"),
        ({"a\x00": 1}, "A key in data contains a NUL"),
        ({"a": {"\udc00": 1}}, "A key in data.a contains a lone UTF-16 surrogate"),
        ({"a": float("nan")}, "The number at data.a is not finite"),
        ({"a": [float("inf")]}, "The number at data.a[0] is not finite"),
        ({1: "a"}, "data has a key that is not a string"),
        ({"a": object()}, "The value at data.a is not a JSON value"),
        (nested(MAX_JSON_DEPTH + 1), f"is nested more than {MAX_JSON_DEPTH} levels deep"),
        ({"a": "x" * 70_000}, "data is larger than 65536 bytes as JSON"),
        ({"a": ["x" * 100] * 700}, "data is larger than 65536 bytes as JSON"),
    ],
)
def test_json_that_cannot_be_stored_is_refused_saying_where(value, words):
    with pytest.raises(InputInvalid) as caught:
        check_json(value, field="data", max_bytes=64 * 1024)

    assert caught.value.field == "data"
    assert words in caught.value.message


def test_a_json_walk_never_recurses():
    deep = nested(200_000)  # far beyond Python's recursion limit

    with pytest.raises(InputInvalid, match="nested more than 32 levels"):
        check_json(deep, field="data")
    assert json_depth_exceeds(deep, 64)
    assert not json_depth_exceeds(nested(64), 64)
    assert json_depth_exceeds(nested(65), 64)
    assert not json_depth_exceeds("scalar", 0)


def test_the_size_counts_about_the_compact_json_text():
    value = {"k": "v" * 1000, "n": [1, 2, 3]}
    compact = len('{"k":"' + "v" * 1000 + '","n":[1,2,3]}')

    check_json(value, field="data", max_bytes=compact + 16)
    with pytest.raises(InputInvalid):
        check_json(value, field="data", max_bytes=compact - 16)


def test_every_domain_error_has_its_status_in_one_place():
    """Domain errors carry no HTTP status; the API's handler maps them (core.api.STATUS_OF)."""
    from core import exceptions
    from core.api import status_of

    expected = {
        exceptions.ApplicationError: 400,
        exceptions.ValidationFailed: 400,
        exceptions.ContentInvalid: 400,
        exceptions.PayloadTooLarge: 413,
        exceptions.NotFound: 404,
        exceptions.InvalidTransition: 409,
        exceptions.Conflict: 409,
        exceptions.IdempotencyConflict: 422,
        exceptions.QuotaExceeded: 429,
        exceptions.ServiceUnavailable: 503,
    }
    for cls, status in expected.items():
        error = cls(retry_after=1) if "retry_after" in cls.__init__.__code__.co_varnames else cls()
        assert not hasattr(error, "status_code"), cls
        assert status_of(error) == status, cls
