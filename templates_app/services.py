"""Writes of templates: create, update (a new version each time) and delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.categories import KEY_INVALID, category_key_valid, category_keys_known
from accounts.models import Application
from core import channels
from core.channels import PART_NAMES, PlainContent, parts_check
from core.exceptions import ValidationFailed
from core.validation import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    InputInvalid,
    check_json,
    text_problem,
)

from . import selectors
from .models import MessageTemplate, TemplateVersion
from .rendering import (
    normalize_language,
    translated_parts,
    validate_data_template,
    validate_template_text,
)

MAX_TEXT_LENGTH = 10_000
MAX_DATA_TEMPLATE_BYTES = MAX_JSON_BYTES
# translations -> language -> data_template: two levels above a data template's own.
TRANSLATIONS_DEPTH = MAX_JSON_DEPTH + 2
MAX_TRANSLATIONS = 200
TRANSLATION_FIELDS = ("title_template", "body_template", "data_template", *PART_NAMES)
NAME_TAKEN = "A template with this name already exists."


class TemplateInvalid(ValidationFailed):
    """Template content that breaks the rules; `details` maps each field to its errors."""


DEFAULT_LANGUAGE = "en"
ONE_OF_TITLE_OR_BODY = "Give a title_template or a body_template (or both)."


def _has_text(*values: Any) -> bool:
    return any(isinstance(value, str) and value.strip() for value in values)


def _text_errors(value: Any) -> list[str]:
    if not isinstance(value, str):
        return ["A template must be a string."]
    if len(value) > MAX_TEXT_LENGTH:
        return [f"At most {MAX_TEXT_LENGTH} characters."]
    if problem := text_problem(value):
        return [f"The template {problem}."]
    return validate_template_text(value)


def _json_errors(
    value: Any, field: str, max_bytes: int | None = None, max_depth: int = MAX_JSON_DEPTH
) -> list[str]:
    """What PostgreSQL could not store in `value`, or how it is too deep or too large."""
    try:
        check_json(value, field=field, max_bytes=max_bytes, max_depth=max_depth)
    except InputInvalid as exc:
        return [exc.message]
    return []


def _strings_in(value: Any, path: str):
    """(path, string) for every string nested in `value`, keys aside."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings_in(item, f"{path}[{index}]")


def _parts_errors(parts: Any) -> dict[str, list[str]]:
    """The problems of template parts ({"email": {...}, ...}) by field (`email.subject`):
    each part's fields and limits (core.channels.part_check, URLs with variables checked
    once rendered), and the template syntax of every string in them."""
    try:
        parts_check(parts, templated=True)
    except InputInvalid as exc:
        return exc.errors
    errors: dict[str, list[str]] = {}
    for name, part in parts.items():
        for path, text in _strings_in(part, name):
            if problems := validate_template_text(text):
                errors.setdefault(path, []).extend(problems)
    return errors


def _without_empty(parts: dict[str, Any]) -> dict[str, Any]:
    return {name: part for name, part in parts.items() if part}


def _translation_errors(translation: Any) -> list[str] | dict[str, list[str]]:
    if not isinstance(translation, dict):
        return [
            "A translation is an object with title_template, body_template and optionally "
            "data_template and channel parts."
        ]
    errors: dict[str, list[str]] = {
        field: ["Unknown field."] for field in sorted(set(translation) - set(TRANSLATION_FIELDS))
    }
    for field in ("title_template", "body_template"):
        if field in translation and (problems := _text_errors(translation[field])):
            errors[field] = problems
    if not errors and not _has_text(
        translation.get("title_template"), translation.get("body_template")
    ):
        errors["body_template"] = [ONE_OF_TITLE_OR_BODY]
    if "data_template" in translation and (
        problems := _json_errors(
            translation["data_template"], "data_template", MAX_DATA_TEMPLATE_BYTES
        )
        or validate_data_template(translation["data_template"])
    ):
        errors["data_template"] = problems
    if not errors:
        errors |= _parts_errors({n: translation[n] for n in PART_NAMES if n in translation})
    return errors


def template_content_clean(
    *,
    title_template: Any = "",
    body_template: Any = "",
    default_language: Any = DEFAULT_LANGUAGE,
    data_template: Any = None,
    translations: Any = None,
    parts: Any = None,
) -> dict[str, Any]:
    """Checks template content and returns it normalized (language tags in their usual case,
    empty parts left out); raises TemplateInvalid with every problem per field (a part's as
    `email.subject`). A template needs a title or a body (or both); its default language is
    `en` unless given."""
    errors: dict[str, Any] = {}
    if problems := _text_errors(title_template):
        errors["title_template"] = problems
    if problems := _text_errors(body_template):
        errors["body_template"] = problems
    if not errors and not _has_text(title_template, body_template):
        errors["title_template"] = errors["body_template"] = [ONE_OF_TITLE_OR_BODY]
    data_template = {} if data_template is None else data_template
    if problems := _json_errors(
        data_template, "data_template", MAX_DATA_TEMPLATE_BYTES
    ) or validate_data_template(data_template):
        errors["data_template"] = problems
    parts = {} if parts is None else parts
    errors |= _parts_errors(parts)
    default = normalize_language(default_language)
    if default is None:
        errors["default_language"] = [
            "A language is a BCP 47 tag such as 'ko' or 'en-US'."
            if default_language
            else "This field is required."
        ]
    translations = {} if translations is None else translations
    normalized: dict[str, Any] = {}
    if not isinstance(translations, dict):
        errors["translations"] = ["Translations are an object: language tag -> texts."]
    elif problems := _json_errors(translations, "translations", max_depth=TRANSLATIONS_DEPTH):
        errors["translations"] = problems
    elif len(translations) > MAX_TRANSLATIONS:
        errors["translations"] = [f"At most {MAX_TRANSLATIONS} translations."]
    else:
        translation_errors: dict[str, Any] = {}
        for tag, translation in translations.items():
            language = normalize_language(tag)
            if language is None:
                translation_errors[tag] = [
                    f"{tag!r} is not a language tag such as 'en' or 'en-US'."
                ]
            elif language == default:
                translation_errors[tag] = [
                    "This is the default language, whose texts are the top-level "
                    "title_template, body_template and data_template."
                ]
            elif language in normalized:
                translation_errors[tag] = [f"{language!r} is given more than once."]
            elif problems := _translation_errors(translation):
                translation_errors[tag] = problems
            else:
                normalized[language] = {
                    key: value
                    for key, value in translation.items()
                    if value or key not in PART_NAMES
                }
        if translation_errors:
            errors["translations"] = translation_errors
    if errors:
        raise TemplateInvalid(details=errors)
    return {
        "title_template": title_template,
        "body_template": body_template,
        "data_template": data_template,
        "translations": normalized,
        "default_language": default,
        "parts": _without_empty(parts),
    }


def _content_check(application: Application, content: dict[str, Any]) -> None:
    """The content rule of each channel whose part the template has in some language
    (ChannelSpec.content_check: an approved KakaoTalk template with its `#{variables}`
    filled), over every language; raises TemplateInvalid naming the field. A template
    without a channel's part is not meant for it and is checked when sent there."""
    contents = [PlainContent(body=content["body_template"], parts=content["parts"])] + [
        PlainContent(
            body=translation.get("body_template", content["body_template"]),
            parts=translated_parts(content["parts"], translation),
        )
        for translation in (content["translations"] or {}).values()
        if isinstance(translation, Mapping)
    ]
    for spec in channels.SPECS.values():
        if spec.content_check and spec.part and any(c.parts.get(spec.part) for c in contents):
            try:
                spec.check_content(application=application, contents=contents, templated=True)
            except InputInvalid as exc:
                raise TemplateInvalid(exc.message, details=exc.errors) from exc


def _name_clean(*, application: Application, name: Any, exclude=None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TemplateInvalid(details={"name": ["This field is required."]})
    if problem := text_problem(name):
        raise TemplateInvalid(details={"name": [f"The name {problem}."]})
    name = name.strip()
    if selectors.template_name_taken(application=application, name=name, exclude=exclude):
        raise TemplateInvalid(details={"name": [NAME_TAKEN]})
    return name


def category_clean(*, application: Application, category: Any) -> str:
    """A template's category as stored: the key of one of the application's categories, or
    "" for none (None or "" given). TemplateInvalid on `category` otherwise."""
    if category is None or category == "":
        return ""
    if not category_key_valid(category):
        raise TemplateInvalid(details={"category": [KEY_INVALID]})
    if not category_keys_known(application=application, keys=[category]):
        raise TemplateInvalid(
            details={
                "category": [
                    f"No category {category!r} in this application; create it with "
                    "POST /categories."
                ]
            }
        )
    return category


def _is_name_taken(exc: IntegrityError) -> bool:
    # Two writers raced past the check; the constraint decides.
    return "template_name_unique" in str(exc)


def template_create(
    *,
    application: Application,
    name: str,
    title_template: str = "",
    body_template: str = "",
    default_language: str = DEFAULT_LANGUAGE,
    data_template: dict | None = None,
    translations: dict | None = None,
    parts: dict | None = None,
    category: str | None = None,
) -> TemplateVersion:
    """Creates a template and its version 1; returns that version (with `.template`).
    `parts`: per-channel parts of template strings, {"email": {"subject": ...}, ...};
    `category`: the key of the category its messages are sent in unless they name one."""
    content = template_content_clean(
        title_template=title_template,
        body_template=body_template,
        default_language=default_language,
        data_template=data_template,
        translations=translations,
        parts=parts,
    )
    _content_check(application, content)
    name = _name_clean(application=application, name=name)
    category = category_clean(application=application, category=category)
    try:
        with transaction.atomic():
            template = MessageTemplate.objects.create(
                application=application, name=name, category=category
            )
            version = TemplateVersion.objects.create(
                template=template, version=1, name=name, **content
            )
            template.current = version
            template.save(update_fields=["current", "updated_at"])
    except IntegrityError as exc:
        if not _is_name_taken(exc):
            raise
        raise TemplateInvalid(details={"name": [NAME_TAKEN]}) from exc
    return version


CONTENT_FIELDS = (
    "title_template",
    "body_template",
    "data_template",
    "translations",
    "default_language",
    "parts",
)


def template_update(*, template: MessageTemplate, **changes: Any) -> TemplateVersion:
    """Stores the template with `changes` (any of `name`, `category` and the content fields;
    the others keep their current values) as a new version, numbered one above the newest;
    earlier versions stay readable. `parts` changes the parts it names, each replaced whole
    (`{}` removes one); the others stay. The category is the template's, not a version's:
    None or "" removes it."""
    unknown = set(changes) - {"name", "category", *CONTENT_FIELDS}
    if unknown:
        raise TypeError(f"template_update() got unknown fields: {sorted(unknown)}")
    current = template.current
    values = {field: changes.get(field, getattr(current, field)) for field in CONTENT_FIELDS}
    if isinstance(changes.get("parts"), dict):
        values["parts"] = {**current.parts, **changes["parts"]}
    content = template_content_clean(**values)
    _content_check(template.application, content)
    name = _name_clean(
        application=template.application, name=changes.get("name", template.name),
        exclude=template,
    )  # fmt: skip
    category = None  # unchanged
    if "category" in changes:
        category = category_clean(application=template.application, category=changes["category"])
    try:
        with transaction.atomic():
            locked = MessageTemplate.objects.select_for_update().get(pk=template.pk)
            newest = (
                TemplateVersion.objects.filter(template=locked)
                .order_by("-version")
                .values_list("version", flat=True)
                .first()
            ) or 0
            version = TemplateVersion.objects.create(
                template=locked, version=newest + 1, name=name, **content
            )
            locked.name = name
            if category is not None:
                locked.category = category
            locked.current = version
            locked.save(update_fields=["name", "category", "current", "updated_at"])
    except IntegrityError as exc:
        if not _is_name_taken(exc):
            raise
        raise TemplateInvalid(details={"name": [NAME_TAKEN]}) from exc
    template.name, template.category = name, locked.category
    template.current, template.updated_at = version, locked.updated_at
    version.template = template
    return version


def template_delete(*, template: MessageTemplate) -> None:
    """Marks the template deleted: it disappears from the API and its name is free again,
    while the messages and campaigns that used its versions still find them."""
    if template.deleted_at is None:
        template.deleted_at = timezone.now()
        template.save(update_fields=["deleted_at", "updated_at"])
