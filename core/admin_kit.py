"""What the admin pages share: forms that refuse what the API refuses, the confirmation
page in front of every action that sends, cancels, revokes or deletes, times shown with
their zone, short ids, links between the pages, and the admin's small style sheet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from .validation import untrusted_text_problem

CONFIRM_TEMPLATE = "admin/confirm_action.html"
LISTED = 100  # objects named on a confirmation page
# An id in lists: its first and last characters (the whole id in its title). Time-ordered ids
# (uuid7) share their first characters with every row written in the same minute; the last
# ones are random.
SHORT_ID_HEAD, SHORT_ID_TAIL = 8, 6
EMPTY = "—"


class AdminMedia:
    """The admin's own style sheet (ids in monospace that never wrap, funnel tables, diffs),
    served from core/static like Django's own; a ModelAdmin takes it as `Media = AdminMedia`."""

    css = {"all": ["core/admin_kit.css"]}


def zoned(moment: datetime | None, *, seconds: bool = True) -> str:
    """A time in the site's zone (settings.TIME_ZONE) with the zone named:
    "2026-12-06 23:10:05 UTC"; "—" for none."""
    if moment is None:
        return EMPTY
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z").strip()


def shortened(value) -> str:
    """ "01a24da5-a7b0-7538-b4fd-69914dda1a8f" as "01a24da5…da1a8f"."""
    full = str(value)
    if len(full) <= SHORT_ID_HEAD + SHORT_ID_TAIL + 1:
        return full
    return f"{full[:SHORT_ID_HEAD]}…{full[-SHORT_ID_TAIL:]}"


def short_id(value, *, url: str | None = None) -> str:
    """An id shortened in monospace, the whole id in the title (shown on hover), linked to
    `url` when given."""
    if value in (None, ""):
        return EMPTY
    full = str(value)
    if url:
        return format_html(
            '<a class="signal-id" href="{}" title="{}">{}</a>', url, full, shortened(full)
        )
    return format_html('<span class="signal-id" title="{}">{}</span>', full, shortened(full))


def change_url(app_label: str, model: str, pk) -> str | None:
    """The admin change page of an object (None when its model is not in the admin)."""
    try:
        return reverse(f"admin:{app_label}_{model}_change", args=[pk])
    except NoReverseMatch:
        return None


def changelist_url(app_label: str, model: str, **filters) -> str:
    """An admin changelist, filtered by the given field lookups."""
    url = reverse(f"admin:{app_label}_{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def linked(app_label: str, model: str, pk, text: str | None = None) -> str:
    """A link to an object's change page: its text, or its short id."""
    if pk in (None, ""):
        return EMPTY
    url = change_url(app_label, model, pk)
    if text is None:
        return short_id(pk, url=url)
    return format_html('<a href="{}">{}</a>', url, text) if url else text


def zoned_column(name: str, description: str | None = None):
    """A list column (or read-only field) of a model's datetime field, shown by `zoned` and
    sortable by the field."""

    @admin.display(description=description or name.replace("_", " "), ordering=name)
    def column(obj):
        return zoned(getattr(obj, name))

    column.__name__ = f"{name}_zoned"
    return column


class StorableJSONField(forms.JSONField):
    """A JSON form field that refuses what the database cannot store (see StorableTextForm),
    and that can put any value back into the page."""

    def validate(self, value):
        super().validate(value)
        problem = untrusted_text_problem(value)
        if problem:
            raise forms.ValidationError(problem, code="invalid")

    def prepare_value(self, value):
        text = super().prepare_value(value)
        # A lone surrogate (sent as a `\ud800` escape) goes back as that escape: the page is
        # UTF-8, which cannot carry it, and the re-sent form then reads the same value.
        return text.encode("utf-8", "backslashreplace").decode() if isinstance(text, str) else text


class StorableTextForm(forms.ModelForm):
    """Turns text the database cannot store (NUL, lone surrogates; in plain fields and inside
    JSON) into a form error on its field, instead of a failed write and a 500."""

    def clean(self):
        cleaned = super().clean()
        for name, value in list(cleaned.items()):
            problem = untrusted_text_problem(value)
            if problem:
                self.add_error(name, problem)
        return cleaned


def add_serializer_errors(
    form: forms.Form, errors: Mapping[str, Any], fields: Mapping[str, str] | None = None
) -> None:
    """Shows an API input serializer's errors on the form: each under its field (`fields`
    maps the API's names to the form's; a dotted name such as `email.subject` by its first
    part), the rest above the form, the API's own messages."""
    fields = fields or {}
    for name, problems in errors.items():
        field = fields.get(name) or fields.get(name.partition(".")[0], name)
        if field not in form.fields:
            field = None
        form.add_error(field, _flat(problems, "" if field else name))


def _flat(problems: Any, path: str) -> list[str]:
    """DRF's nested errors ({"tags": {"plan": ["Not a valid string."]}}) as messages that
    name where each problem is."""
    if isinstance(problems, Mapping):
        return [
            message
            for key, value in problems.items()
            for message in _flat(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(problems, list | tuple):
        return [message for problem in problems for message in _flat(problem, path)]
    return [f"{path}: {problems}" if path else str(problems)]


def confirmation(
    modeladmin: admin.ModelAdmin,
    request,
    *,
    title: str,
    consequences: Iterable[str],
    objects: Iterable[Any],
    action: str | None = None,
    action_url: str = "",
    button: str = "Yes, I'm sure",
) -> TemplateResponse | None:
    """None once the request carries the confirmation (a POST with `confirm=yes`); else the
    page that lists what will happen and asks for it, posting back to the same action (a
    changelist `action` with its selected ids, or `action_url`). A GET never confirms."""
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        return None
    # "Select all N" acts on the filtered changelist, which may be millions of rows: the page
    # then carries the selection (and the filters, in its URL), not every id.
    select_across = request.POST.get("select_across") == "1"
    objects = list(islice(objects, LISTED + 1 if select_across else None))
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "consequences": list(consequences),
        "objects": objects,
        "action": action,
        "action_url": action_url,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "button": button,
        "select_across": select_across,
        "listed": LISTED,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)
