"""The template language and render(): substitution, missing variables, languages, caching."""

from __future__ import annotations

import uuid

import pytest
from cachetools import LRUCache

from core.validation import InputInvalid
from templates_app import rendering
from templates_app.models import TemplateVersion
from templates_app.rendering import (
    Rendered,
    compiled_cache,
    normalize_language,
    render,
    validate_data_template,
    validate_template_text,
)


def version(**fields) -> TemplateVersion:
    """An unsaved version with a template id, so it is cached like a stored one."""
    defaults = {
        "template_id": uuid.uuid4(),
        "version": 1,
        "name": "t",
        "title_template": "",
        "body_template": "",
        "data_template": {},
        "translations": {},
        "default_language": "ko",
    }
    return TemplateVersion(**{**defaults, **fields})


# --- Substitution ------------------------------------------------------------------------------


def test_variables_are_substituted_in_title_and_body_with_or_without_spaces():
    v = version(title_template="Hello {{name}}", body_template="{{ a }}+{{  b  }}={{a}}{{b}}")

    rendered = render(v, {"name": "Kim", "a": "1", "b": "2"}, None)

    assert rendered == Rendered("Hello Kim", "1+2=12", {}, [], "ko", 1)


def test_every_string_nested_in_data_is_a_template_and_keys_stay_literal():
    v = version(
        data_template={
            "{{key}}": "{{ value }}",
            "list": ["a{{value}}", 7, None, True, {"deep": ["{{value}}!"]}],
            "plain": "no variables",
            "n": 1.5,
        }
    )

    rendered = render(v, {"value": "V", "key": "K"}, None)

    assert rendered.data == {
        "{{key}}": "V",
        "list": ["aV", 7, None, True, {"deep": ["V!"]}],
        "plain": "no variables",
        "n": 1.5,
    }
    assert rendered.missing_variables == []


def test_rendered_data_is_a_fresh_object_each_time():
    v = version(data_template={"screen": "home", "items": ["x"]})

    first = render(v, {}, None)
    first.data["screen"] = "changed"
    first.data["items"].append("y")

    assert render(v, {}, None).data == {"screen": "home", "items": ["x"]}


def test_missing_variables_render_empty_and_are_listed_sorted_and_once():
    v = version(
        title_template="{{ zeta }}Hi {{name}}",
        body_template="{{alpha}}{{zeta}}",
        data_template={"x": "{{alpha}}-{{ beta }}"},
    )

    rendered = render(v, {"name": "Kim"}, None)

    assert (rendered.title, rendered.body, rendered.data) == ("Hi Kim", "", {"x": "-"})
    assert rendered.missing_variables == ["alpha", "beta", "zeta"]


def test_dotted_names_look_into_dict_variables_and_an_exact_key_wins():
    v = version(title_template="{{ user.name }}/{{user.address.city}}/{{user.age}}")

    nested = render(v, {"user": {"name": "Kim", "address": {"city": "Seoul"}}}, None)
    exact = render(v, {"user.name": "literal", "user": {"name": "nested"}}, None)
    not_a_dict = render(v, {"user": "Kim"}, None)

    assert nested.title == "Kim/Seoul/"
    assert nested.missing_variables == ["user.age"]
    assert exact.title.startswith("literal/")
    assert not_a_dict.title == "//"
    assert not_a_dict.missing_variables == ["user.address.city", "user.age", "user.name"]


def test_values_are_converted_with_str_and_none_is_empty_but_not_missing():
    v = version(body_template="{{i}} {{f}} {{b}} {{l}} {{d}} [{{n}}]")

    rendered = render(v, {"i": 3, "f": 2.5, "b": True, "l": [1, 2], "d": {"k": 1}, "n": None}, None)

    assert rendered.body == "3 2.5 True [1, 2] {'k': 1} []"
    assert rendered.missing_variables == []


def test_percent_signs_and_single_braces_are_literal_text():
    v = version(title_template="100% {off} {{x}}% {{ {")

    assert validate_template_text("100% {off} {{x}}%") == []
    assert render(version(title_template="100% {off} {{x}}%"), {"x": "5"}, None).title == (
        "100% {off} 5%"
    )
    assert validate_template_text(v.title_template)  # the unclosed '{{' is reported


def test_variables_may_be_none():
    assert render(version(title_template="a{{x}}"), None, None).missing_variables == ["x"]


# --- Validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Hello {{name", "never closed"),
        ("{{ }}", "Empty variable"),
        ("{{}}", "Empty variable"),
        ("oops }} here", "Stray '}}'"),
        ("{{ 1abc }}", "not a variable name"),
        ("{{ first name }}", "not a variable name"),
        ("{{ a-b }}", "not a variable name"),
        ("{{ user. }}", "not a variable name"),
        ("{{ a {{ b }}", "not closed before the next"),
    ],
)
def test_invalid_template_text_is_reported(text, fragment):
    errors = validate_template_text(text)

    assert errors and any(fragment in error for error in errors), errors


@pytest.mark.parametrize(
    "text", ["", "plain", "{{a}}", "{{ _a1 }}", "{{ user.name }}", "{{a.b.0}}", "{ } {x}"]
)
def test_valid_template_text_has_no_errors(text):
    assert validate_template_text(text) == []


def test_data_template_errors_name_the_path_and_a_non_object_is_refused():
    errors = validate_data_template({"ok": "{{a}}", "list": [1, {"bad": "{{ }}"}], "k": "}}"})

    assert len(errors) == 2
    assert any(error.startswith("at list[1].bad:") for error in errors), errors
    assert any(error.startswith("at k:") for error in errors), errors
    assert validate_data_template(["{{a}}"]) == ["The data template must be a JSON object."]
    assert validate_data_template("x")


@pytest.mark.parametrize(
    ("tag", "normalized"),
    [("en", "en"), ("EN_us", "en-US"), ("zh-hant-tw", "zh-Hant-TW"), ("ko-KR", "ko-KR")],
)
def test_language_tags_are_normalized(tag, normalized):
    assert normalize_language(tag) == normalized


@pytest.mark.parametrize("tag", ["", "e", "english!", "en--US", "12", None, 5, "a" * 40])
def test_non_language_tags_are_refused(tag):
    assert normalize_language(tag) is None


# --- Languages ---------------------------------------------------------------------------------


@pytest.fixture
def multilingual() -> TemplateVersion:
    return version(
        title_template="안녕 {{n}}",
        body_template="ko body",
        data_template={"lang": "ko"},
        translations={
            "en": {"title_template": "Hello {{n}}", "body_template": "en body"},
            "en-GB": {
                "title_template": "Hiya {{n}}",
                "body_template": "gb body",
                "data_template": {"lang": "gb"},
            },
        },
        default_language="ko",
    )


@pytest.mark.parametrize(
    ("requested", "used", "title", "data"),
    [
        ("en", "en", "Hello N", {"lang": "ko"}),  # a translation without data uses the default's
        ("en-GB", "en-GB", "Hiya N", {"lang": "gb"}),  # exact
        ("en_gb", "en-GB", "Hiya N", {"lang": "gb"}),  # exact, written differently
        ("en-US", "en", "Hello N", {"lang": "ko"}),  # base language
        ("ko", "ko", "안녕 N", {"lang": "ko"}),
        ("ja", "ko", "안녕 N", {"lang": "ko"}),  # the default
        (None, "ko", "안녕 N", {"lang": "ko"}),
        ("", "ko", "안녕 N", {"lang": "ko"}),
        ("not a tag!", "ko", "안녕 N", {"lang": "ko"}),
    ],
)
def test_language_fallback(multilingual, requested, used, title, data):
    rendered = render(multilingual, {"n": "N"}, requested)

    assert (rendered.language, rendered.title, rendered.data) == (used, title, data)


# --- Cache -------------------------------------------------------------------------------------


def test_compiled_templates_are_cached_per_template_and_version():
    v1 = version(title_template="one {{x}}")
    v2 = version(template_id=v1.template_id, version=2, title_template="two {{x}}")

    assert render(v1, {"x": 1}, None).title == "one 1"
    assert len(compiled_cache) == 1
    # A copy of the same version (as a new query returns) hits the cache...
    again = version(template_id=v1.template_id, version=1, title_template="one {{x}}")
    assert render(again, {"x": 2}, None).title == "one 2"
    assert len(compiled_cache) == 1
    # ...and a new version is a new key, so an update is never served stale.
    assert render(v2, {"x": 3}, None).title == "two 3"
    assert (render(v2, {}, None).version, len(compiled_cache)) == (2, 2)


def test_the_cache_is_bounded(monkeypatch):
    assert compiled_cache.maxsize == rendering.CACHE_SIZE
    small = LRUCache(maxsize=3)
    monkeypatch.setattr(rendering, "compiled_cache", small)
    first = version(title_template="first")

    render(first, {}, None)
    for _ in range(5):
        render(version(), {}, None)

    assert len(small) == 3
    assert small.get((first.template_id, 1)) is None


def test_unsaved_versions_without_a_template_are_rendered_but_not_cached():
    v = version(template_id=None, title_template="{{x}}")

    assert render(v, {"x": "y"}, None).title == "y"
    assert len(compiled_cache) == 0


def test_a_data_template_deeper_than_the_limit_is_refused_without_recursing():
    deep: list = []
    for _ in range(100_000):  # far beyond Python's recursion limit
        deep = [deep]

    assert validate_data_template({"a": deep}) == [
        "The data template is nested more than 32 levels deep."
    ]
    with pytest.raises(InputInvalid, match="nested more than 32 levels"):
        render(version(title_template="t", data_template={"a": deep}), {})
