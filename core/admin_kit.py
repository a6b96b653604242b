"""What the admin pages share: forms that refuse what the API refuses, and the confirmation
page in front of every action that sends, cancels, revokes or deletes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from .validation import untrusted_text_problem

CONFIRM_TEMPLATE = "admin/confirm_action.html"
LISTED = 100  # objects named on a confirmation page


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
