"""The campaign form of the admin: targeting, variables and the schedule as fields of their own
(key=value lines, pickers, checkboxes, a crontab builder with presets), read from and written to
the same JSON the API stores. Every value is judged by the campaign's own rules
(targeting.criteria_clean, schedules.schedule_clean, services.campaign_validate); the form
only turns fields into that JSON and puts the rules' errors under the fields they name."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin import widgets as admin_widgets
from django.utils import timezone

from core.admin_kit import StorableJSONField, StorableTextForm, add_serializer_errors
from core.channels import PART_NAMES, SPECS, parts_example
from core.countries import country_names
from core.exceptions import ApplicationError, ContentInvalid, NotFound, ValidationFailed
from messaging.models import Message
from messaging.services.messages import MAX_BODY_LENGTH, MAX_TITLE_LENGTH, MAX_TTL
from templates_app.models import MessageTemplate
from templates_app.rendering import compiled

from . import services
from .local_time import LOCAL_TIME
from .models import Campaign
from .schedules import CRON_FIELDS, ScheduleInvalid, schedule_clean
from .targeting import CriteriaInvalid, criteria_clean

# What the services take, in the order they are named.
FORM_FIELDS = services.EDITABLE_FIELDS
TARGETING_FIELDS = ("tags", "user_tags", "countries", "languages", "channels", "last_active_after")
CRON_FORM_FIELDS = tuple(f"cron_{name}" for name in CRON_FIELDS)
CUSTOM = "custom"
PRESETS = {
    "0 9 * * *": "Every day at 09:00",
    "0 9 * * 1": "Every Monday at 09:00",
    "0 9 * * 1-5": "Every weekday (Monday to Friday) at 09:00",
    "0 10 * * 6,0": "Every Saturday and Sunday at 10:00",
    "0 9 1 * *": "The first day of every month at 09:00",
    "0 * * * *": "Every hour, on the hour",
    "*/15 * * * *": "Every 15 minutes",
}
# The services name fields as the API does; where each is on this form.
API_NAMES = {
    "template_id": "template",
    "schedule": "schedule_preset",
    "delivery": "local_time",
    **dict.fromkeys(PART_NAMES, "parts"),
}


@cache
def time_zones() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


def _problems(errors: dict, prefix: bool = False) -> list[str]:
    """{key: [messages]} from criteria_clean / schedule_clean as form messages."""
    return [
        f"{key}: {message}" if prefix else message
        for key, problems in errors.items()
        for message in problems
    ]


# --- key=value lines ---------------------------------------------------------------------------


def lines_parse(text: str, *, json_values: bool) -> dict[str, Any]:
    """`key=value` lines as a dict of strings; with `json_values`, `key:=<JSON>` gives any
    JSON value (a number, a list, an object). Blank lines are skipped; raises ValidationError
    naming the line of a problem."""
    values: dict[str, Any] = {}
    problems = []
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        as_json = json_values and key.endswith(":")
        key = key.removesuffix(":").strip() if as_json else key
        if not sep or not key:
            example = "name=value or name:=<JSON>" if json_values else "key=value"
            problems.append(f"Line {number}: not {example}.")
            continue
        if key in values:
            problems.append(f"Line {number}: {key} is given twice.")
            continue
        if as_json:
            try:
                values[key] = json.loads(value)
            except ValueError as exc:
                problems.append(f"Line {number}: {key}:= is not JSON: {exc}.")
                continue
        else:
            values[key] = value.strip()
    if problems:
        raise forms.ValidationError(problems)
    return values


def lines_format(values: dict | None) -> str:
    """A dict as the lines lines_parse reads back into it (JSON for what is not one-line text)."""
    lines = []
    for key, value in (values or {}).items():
        if isinstance(value, str) and "\n" not in value and value == value.strip():
            lines.append(f"{key}={value}")
        else:
            lines.append(f"{key}:={json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines)


class TemplateSelect(forms.Select):
    """A template's option carries the variables its current version uses (data-variables),
    which the page's script shows in the variables field."""

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        template = getattr(value, "instance", None)
        if template is not None and template.current_id:
            option["attrs"]["data-variables"] = ",".join(
                sorted(compiled(template.current).variables)
            )
        return option


class TemplateChoiceField(forms.ModelChoiceField):
    widget = TemplateSelect

    def label_from_instance(self, obj: MessageTemplate) -> str:
        return f"{obj.name} ({obj.application})"


def _language_choices(extra: list[str]) -> list[tuple[str, str]]:
    known = {code: f"{name} ({code})" for code, name in settings.LANGUAGES}
    for code in extra:  # a stored language Django does not list stays choosable
        known.setdefault(code, code)
    return sorted(known.items(), key=lambda item: item[1].lower())


class CampaignForm(StorableTextForm):
    template = TemplateChoiceField(
        queryset=MessageTemplate.objects.filter(deleted_at__isnull=True).select_related(
            "application", "current"
        ),
        required=False,
        help_text="A template of the same application, or leave empty and give title/body/data.",
    )
    variables = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea({"rows": 4, "class": "vLargeTextField"}),
        help_text="The template's variables, one per line: <code>name=value</code> (text), or "
        '<code>name:=JSON</code> for a number, list or object (<code>user:={"name": "Kim"}'
        "</code>).",
    )
    title = forms.CharField(required=False, max_length=MAX_TITLE_LENGTH)
    body = forms.CharField(
        required=False, max_length=MAX_BODY_LENGTH, widget=forms.Textarea({"rows": 3})
    )
    data = StorableJSONField(required=False, initial=dict)
    parts = StorableJSONField(
        required=False,
        initial=dict,
        label="Channel parts",
        help_text=f"With literal content: {parts_example()}; each part and field optional.",
    )
    # The audience: together, targeting_criteria.
    tags = forms.CharField(
        required=False,
        widget=forms.Textarea({"rows": 3, "placeholder": "plan=gold"}),
        help_text="Subscriptions having every one of these tags, one <code>key=value</code> "
        "per line.",
    )
    user_tags = forms.CharField(
        required=False,
        label="User tags",
        widget=forms.Textarea({"rows": 3, "placeholder": "tier=vip"}),
        help_text="Subscriptions whose user has every one of these tags, one "
        "<code>key=value</code> per line (subscriptions of no user never match).",
    )
    countries = forms.MultipleChoiceField(
        required=False,
        widget=admin_widgets.FilteredSelectMultiple("countries", is_stacked=False),
        help_text="Any of these countries; none chosen: every country.",
    )
    languages = forms.MultipleChoiceField(
        required=False,
        widget=admin_widgets.FilteredSelectMultiple("languages", is_stacked=False),
        help_text='Any of these languages ("en" also matches "en-US"); none chosen: every '
        "language.",
    )
    channels = forms.MultipleChoiceField(
        required=False,
        choices=[(spec.type, spec.label) for spec in SPECS.values()],
        widget=forms.CheckboxSelectMultiple,
        help_text="Only subscriptions of these channels; none ticked: every channel.",
    )
    last_active_after = forms.SplitDateTimeField(
        required=False,
        widget=admin_widgets.AdminSplitDateTime,
        label="Last active after",
        help_text=f"Only subscriptions seen since then ({settings.TIME_ZONE}).",
    )
    # The schedule: a one-off time, or a recurring crontab with its time zone.
    schedule_preset = forms.ChoiceField(
        required=False,
        label="Recurring",
        choices=[
            ("", "No, not recurring"),
            *PRESETS.items(),
            (CUSTOM, "Custom (the fields below)"),
        ],
        help_text="A preset, or Custom to use the crontab fields below.",
    )
    cron_minute = forms.CharField(required=False, max_length=64, label="Minute")
    cron_hour = forms.CharField(required=False, max_length=64, label="Hour")
    cron_day_of_month = forms.CharField(required=False, max_length=64, label="Day of month")
    cron_month_of_year = forms.CharField(required=False, max_length=64, label="Month")
    cron_day_of_week = forms.CharField(
        required=False,
        max_length=64,
        label="Day of week",
        help_text="Crontab syntax: <code>*</code>, <code>*/15</code>, <code>1-5</code>, "
        "<code>1,15</code>; day of week 0 or 7 is Sunday. Empty fields are <code>*</code>.",
    )
    schedule_timezone = forms.ChoiceField(
        required=False,
        label="Time zone",
        choices=time_zones,
        initial="UTC",
        help_text="The zone the recurring times are in (daylight saving time included).",
    )
    throttle_per_minute = forms.IntegerField(required=False, min_value=1, max_value=10_000_000)
    priority = forms.ChoiceField(choices=Message.Priority.choices, initial="normal")
    ttl = forms.IntegerField(required=False, min_value=0, max_value=MAX_TTL, help_text="Seconds.")
    category = forms.CharField(
        required=False,
        max_length=64,
        help_text="The key of one of the application's categories (its recipients' preferences "
        "and the frequency cap apply); empty: the template's, else none.",
    )
    # Together with nothing else, `delivery`.
    local_time = forms.CharField(
        required=False,
        max_length=5,
        label="Local time",
        widget=forms.TextInput({"placeholder": "09:00", "size": 6}),
        help_text="HH:MM: each subscription gets its message at the next such time on its own "
        "clock (its time zone, else the recurring schedule's, else UTC). Empty: at once.",
    )

    class Meta:
        model = Campaign
        fields = [
            "application",
            "name",
            "template",
            "title",
            "body",
            "data",
            "parts",
            "scheduled_at",
            "throttle_per_minute",
            "priority",
            "ttl",
            "category",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        campaign = self.instance
        criteria = campaign.targeting_criteria or {}
        self.fields["countries"].choices = list(country_names().items())
        self.fields["languages"].choices = _language_choices(criteria.get("languages", []))
        if "scheduled_at" in self.fields:
            self.fields[
                "scheduled_at"
            ].help_text = (
                f"Once, at this time ({settings.TIME_ZONE}). Not with a recurring schedule."
            )
        if campaign._state.adding:
            return
        moment = criteria.get("last_active_after")
        initial = {
            "variables": lines_format(campaign.variables),
            "tags": lines_format(criteria.get("tags")),
            "user_tags": lines_format(criteria.get("user_tags")),
            "countries": criteria.get("countries", []),
            "languages": criteria.get("languages", []),
            "channels": criteria.get("channels", []),
            "last_active_after": (
                timezone.localtime(datetime.fromisoformat(moment)) if moment else None
            ),
            "local_time": (campaign.delivery or {}).get(LOCAL_TIME, ""),
        }
        if campaign.schedule:
            crontab = campaign.schedule["crontab"]
            initial |= dict(zip(CRON_FORM_FIELDS, crontab.split(), strict=True))
            initial["schedule_preset"] = crontab if crontab in PRESETS else CUSTOM
            initial["schedule_timezone"] = campaign.schedule.get("timezone", "UTC")
        # Over the model's own values too: the stored JSON is shown as these fields' text.
        self.initial.update(initial)
        if campaign.template_id and campaign.template.current_id:
            names = sorted(compiled(campaign.template.current).variables)
            if names:
                field = self.fields["variables"]
                field.widget.attrs["placeholder"] = "\n".join(f"{name}=" for name in names)
                field.help_text += f" The template uses: {', '.join(names)}."

    # --- Each field ---------------------------------------------------------------------------

    def clean_variables(self):
        return lines_parse(self.cleaned_data.get("variables"), json_values=True)

    def clean_tags(self):
        return lines_parse(self.cleaned_data.get("tags"), json_values=False)

    def clean_user_tags(self):
        return lines_parse(self.cleaned_data.get("user_tags"), json_values=False)

    def clean_data(self):
        return self._object("data")

    def clean_parts(self):
        return self._object("parts")

    def _object(self, name: str) -> dict:
        value = self.cleaned_data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("A JSON object.")
        return value

    # --- The JSON they make -------------------------------------------------------------------

    def _criteria(self, cleaned) -> dict | None:
        """targeting_criteria from the audience fields, by criteria_clean's rules; None (and
        the errors under the fields) when they break them."""
        criteria: dict[str, Any] = {}
        for name in TARGETING_FIELDS:
            value = cleaned.get(name)
            if name in self.errors or not value:
                continue
            criteria[name] = value.isoformat() if name == "last_active_after" else value
        try:
            return criteria_clean(criteria)
        except CriteriaInvalid as exc:
            for key, problems in exc.errors.items():
                self.add_error(key if key in self.fields else None, problems)
            return None

    def _schedule(self, cleaned) -> dict | None:
        """schedule from the builder (a preset, or the crontab fields), by schedule_clean's
        rules; None when not recurring (or when it breaks them, with the errors under the
        fields)."""
        preset = cleaned.get("schedule_preset") or ""
        given = [(cleaned.get(name) or "").strip() for name in CRON_FORM_FIELDS]
        if not preset and not any(given):
            return None
        crontab = preset if preset in PRESETS else " ".join(part or "*" for part in given)
        schedule = {"crontab": crontab, "timezone": cleaned.get("schedule_timezone") or "UTC"}
        try:
            return schedule_clean(schedule)
        except ScheduleInvalid as exc:
            self._schedule_errors(exc.errors, given if preset not in PRESETS else None)
            return None

    def _schedule_errors(self, errors: dict, given: list[str] | None) -> None:
        """Puts schedule_clean's errors under the crontab field at fault (each field judged
        alone by the same rule, the others `*`), else under the preset."""
        if "timezone" in errors:
            self.add_error("schedule_timezone", errors.pop("timezone"))
        if "crontab" not in errors:
            return
        placed = False
        for index, name in enumerate(CRON_FORM_FIELDS):
            if given is None or not given[index]:
                continue
            alone = ["*"] * len(CRON_FORM_FIELDS)
            alone[index] = given[index]
            try:
                schedule_clean({"crontab": " ".join(alone)})
            except ScheduleInvalid as exc:
                self.add_error(name, exc.errors.get("crontab", _problems(exc.errors)))
                placed = True
        if not placed:
            self.add_error("schedule_preset", errors["crontab"])

    def clean(self):
        cleaned = super().clean()
        cleaned["targeting_criteria"] = self._criteria(cleaned)
        cleaned["schedule"] = self._schedule(cleaned)
        clock = (cleaned.get("local_time") or "").strip()
        cleaned["delivery"] = {LOCAL_TIME: clock} if clock else {}
        if self.errors:
            return cleaned  # the services judge values the form could read
        adding = self.instance._state.adding
        application = cleaned.get("application") if adding else self.instance.application
        try:
            services.campaign_validate(
                application=application,
                campaign=None if adding else self.instance,
                **self.service_fields(),
            )
        except ApplicationError as exc:
            self._add_service_error(exc)
        return cleaned

    def _add_service_error(self, exc: ApplicationError) -> None:
        """A service's refusal on the form: under the fields it names (the API's names mapped
        to the form's), the rest above the form."""
        template = self.cleaned_data.get("template")
        if template is not None and isinstance(exc, ContentInvalid | NotFound):
            # What the template renders to, or a template gone meanwhile.
            self.add_error("template", exc.message)
        elif isinstance(exc, ValidationFailed) and exc.details:
            details = dict(exc.details)
            if whole := details.pop("non_field_errors", None):
                self.add_error(None, whole)
            add_serializer_errors(self, details, API_NAMES)
        else:
            self.add_error(None, exc.message)

    def _all_parts(self) -> dict[str, dict]:
        """Every part, `{}` for the ones the form leaves out (which removes them)."""
        parts = self.cleaned_data.get("parts") or {}
        return {name: parts.get(name, {}) for name in PART_NAMES} | parts

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data.get(name) for name in FORM_FIELDS} | {
            "parts": self._all_parts(),
            "targeting_criteria": self.cleaned_data.get("targeting_criteria") or {},
        }
