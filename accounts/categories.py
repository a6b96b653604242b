"""Categories of an application (what a message is about: "offers", "receipts"): their rules,
writes and reads, for the API (accounts.api.categories) and the admin alike. Each write is
audited with the actor the caller passes.

A category is named by its `key` on messages, templates and campaigns, and in the recipients'
preferences. Deleting one leaves those names as they are: a message that names a deleted key,
itself or through its template, is refused (`400 validation_error` on `category`, from
messaging.rules.rules_for), and a campaign run whose category is gone fails with that reason.
Nothing is sent without the rules its sender asked for: clearing the names instead would send
those messages past the recipients' opt-outs. The recipients' choices for a deleted key stay
in their preferences, and apply again if a category with that key is created again."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from core.exceptions import NotFound, ValidationFailed
from core.languages import LANGUAGE_TAG, MAX_LANGUAGE_LENGTH, normalize_language
from core.validation import text_problem

from . import audit
from .models import CATEGORY_KEY_MAX_LENGTH, CATEGORY_KEY_PATTERN, Application, Category

MAX_NAME_LENGTH = Category._meta.get_field("name").max_length
MAX_TRANSLATIONS = 100
MAX_CATEGORIES = 200  # per application: every preference page lists them all
# What category_update changes (the key never: messages, templates, campaigns and the
# recipients' preferences name the category by it).
CHANGEABLE = ("name", "required", "default_enabled", "translations")

KEY_INVALID = (
    f"A key is 1-{CATEGORY_KEY_MAX_LENGTH} characters: lower-case letters, digits, '-' and '_', "
    "starting with a letter or a digit."
)
KEY_TAKEN = "The application already has a category with this key."
_KEY = re.compile(CATEGORY_KEY_PATTERN)
_TAG = re.compile(LANGUAGE_TAG)


def category_key_valid(value: Any) -> bool:
    """Whether `value` has the form of a category key (CATEGORY_KEY_PATTERN, whole string)."""
    return (
        isinstance(value, str)
        and len(value) <= CATEGORY_KEY_MAX_LENGTH
        and _KEY.fullmatch(value) is not None
    )


def _shown(value: Any) -> str:
    """A value from outside as an error message may quote it: ASCII, at most 40 characters."""
    text = ascii(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _name_errors(value: Any) -> tuple[str, list[str]]:
    if not isinstance(value, str):
        return "", ["A name is a string."]
    if problem := text_problem(value):
        return "", [f"The name {problem}."]
    if len(value) > MAX_NAME_LENGTH:
        return "", [f"At most {MAX_NAME_LENGTH} characters."]
    value = value.strip()
    if not value:
        return "", ["A name needs some text."]
    return value, []


def translations_clean(value: Any) -> dict[str, str]:
    """`{language tag: name}` with the tags in their usual case (`pt-BR`) and the names
    trimmed; ValidationFailed on `translations` (or `translations.<tag>`) otherwise."""
    if not isinstance(value, Mapping):
        raise ValidationFailed(
            details={"translations": ["An object: language tag (e.g. 'ko') -> name."]}
        )
    if len(value) > MAX_TRANSLATIONS:
        raise ValidationFailed(details={"translations": [f"At most {MAX_TRANSLATIONS}."]})
    errors: dict[str, list[str]] = {}
    clean: dict[str, str] = {}
    for tag, name in value.items():
        language = None
        if isinstance(tag, str) and len(tag) <= MAX_LANGUAGE_LENGTH and _TAG.fullmatch(tag):
            language = normalize_language(tag)
        if language is None:
            errors.setdefault("translations", []).append(
                f"{_shown(tag)} is not a language tag such as 'ko' or 'pt-BR'."
            )
            continue
        if language in clean:
            errors[f"translations.{tag}"] = [f"{language!r} is given more than once."]
            continue
        name, problems = _name_errors(name)
        if problems:
            errors[f"translations.{tag}"] = problems
        else:
            clean[language] = name
    if errors:
        raise ValidationFailed(details=errors)
    return clean


def category_fields_clean(**fields: Any) -> dict[str, Any]:
    """The given fields of a category (`key`, `name`, `required`, `default_enabled`,
    `translations`) as they are stored; ValidationFailed naming every field that breaks its
    rule. The API's serializers and the admin's form call it, so both refuse the same."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "key":
            if category_key_valid(value):
                clean[name] = value
            else:
                errors[name] = [KEY_INVALID]
        elif name == "name":
            clean[name], problems = _name_errors(value)
            if problems:
                errors[name] = problems
        elif name in ("required", "default_enabled"):
            if isinstance(value, bool):
                clean[name] = value
            else:
                errors[name] = ["Must be true or false."]
        elif name == "translations":
            try:
                clean[name] = translations_clean(value)
            except ValidationFailed as exc:
                errors.update(exc.details)
        else:
            errors[name] = ["Unknown field."]
    if errors:
        raise ValidationFailed(details=errors)
    return clean


def _is_key_taken(exc: IntegrityError) -> bool:
    # Two writers raced past the check; the constraint decides.
    return "category_key_unique" in str(exc)


def category_create(
    *,
    application: Application,
    key: str,
    name: str,
    required: bool = False,
    default_enabled: bool = True,
    translations: dict[str, str] | None = None,
    actor: str = audit.SYSTEM,
) -> Category:
    """Creates a category of the application, audited as CATEGORY_CREATED. ValidationFailed
    when a field breaks its rule, the key is taken, or the application has MAX_CATEGORIES."""
    fields = category_fields_clean(
        key=key,
        name=name,
        required=required,
        default_enabled=default_enabled,
        translations={} if translations is None else translations,
    )
    categories = Category.objects.filter(application=application)
    if categories.filter(key=fields["key"]).exists():
        raise ValidationFailed(details={"key": [KEY_TAKEN]})
    if categories.count() >= MAX_CATEGORIES:
        raise ValidationFailed(
            details={"key": [f"An application has at most {MAX_CATEGORIES} categories."]}
        )
    try:
        with transaction.atomic():
            category = Category.objects.create(application=application, **fields)
            audit.audit_record(
                application_id=application.pk,
                actor=actor,
                action=audit.CATEGORY_CREATED,
                object_type="category",
                object_id=category.key,
                details={
                    name: fields[name] for name in ("key", "name", "required", "default_enabled")
                }
                | {"translations": sorted(fields["translations"])},
            )
    except IntegrityError as exc:
        if not _is_key_taken(exc):
            raise
        raise ValidationFailed(details={"key": [KEY_TAKEN]}) from exc
    return category


def category_update(*, category: Category, actor: str, **changes: Any) -> Category:
    """Sets the given fields among CHANGEABLE (`key` is refused) that differ from what is
    stored, audited as CATEGORY_CHANGED with the old and new values (for `translations`, the
    languages added, changed or removed). Nothing given or nothing different: no write, no
    row."""
    if "key" in changes:
        raise ValidationFailed(
            details={"key": ["A category's key cannot be changed; create another category."]}
        )
    fields = category_fields_clean(**changes)
    with transaction.atomic():
        locked = Category.objects.select_for_update().filter(pk=category.pk).first()
        if locked is None:
            raise NotFound("No such category.")
        changed = [name for name in CHANGEABLE if name in fields]
        changed = [name for name in changed if getattr(locked, name) != fields[name]]
        if changed:
            details: dict[str, Any] = {"key": locked.key, "changes": {}}
            for name in changed:
                if name == "translations":
                    before, after = locked.translations, fields[name]
                    details["translations"] = sorted(
                        tag for tag in set(before) | set(after) if before.get(tag) != after.get(tag)
                    )
                else:
                    details["changes"][name] = [getattr(locked, name), fields[name]]
                setattr(locked, name, fields[name])
            locked.save(update_fields=[*changed, "updated_at"])
            audit.audit_record(
                application_id=locked.application_id,
                actor=actor,
                action=audit.CATEGORY_CHANGED,
                object_type="category",
                object_id=locked.key,
                details=details,
            )
    return locked


def category_delete(*, category: Category, actor: str) -> None:
    """Deletes the category, audited as CATEGORY_DELETED. What still names its key is left
    as it is (see the module docstring). Deleting a deleted one records nothing."""
    with transaction.atomic():
        deleted, _ = Category.objects.filter(pk=category.pk).delete()
        if deleted:
            audit.audit_record(
                application_id=category.application_id,
                actor=actor,
                action=audit.CATEGORY_DELETED,
                object_type="category",
                object_id=category.key,
                details={"key": category.key, "name": category.name},
            )


# --- Reads -------------------------------------------------------------------------------------


def category_get(*, application: Application, key: str) -> Category:
    """One of the application's categories by its key; NotFound for another application's, an
    unknown key, or a string that cannot be a key."""
    category = None
    if category_key_valid(key):
        category = Category.objects.filter(application=application, key=key).first()
    if category is None:
        raise NotFound("No such category.")
    return category


def category_list(*, application: Application) -> QuerySet[Category]:
    """The application's categories, by key."""
    return Category.objects.filter(application=application).order_by("key")


def category_keys_known(*, application: Application, keys) -> set[str]:
    """Which of `keys` are keys of the application's categories (one query)."""
    keys = [key for key in keys if category_key_valid(key)]
    if not keys:
        return set()
    return set(
        Category.objects.filter(application=application, key__in=keys).values_list("key", flat=True)
    )
