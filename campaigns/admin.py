"""The campaign managers' console: write a campaign (through the same services as the API, so
its beat task follows), preview its audience, execute or cancel it, watch its runs."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone

from core.admin_kit import (
    StorableJSONField,
    StorableTextForm,
    add_serializer_errors,
    confirmation,
)
from core.channels import CHANNELS, PART_NAMES, parts_example
from core.exceptions import ApplicationError, ContentInvalid, NotFound, ValidationFailed
from messaging.models import Message
from messaging.services.messages import MAX_BODY_LENGTH, MAX_TITLE_LENGTH, MAX_TTL
from templates_app.models import MessageTemplate

from . import selectors, services
from .models import Campaign, CampaignRun, CampaignStatus
from .schedules import ScheduleInvalid, schedule_clean
from .targeting import CriteriaInvalid, criteria_clean

EDITABLE_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
# Statuses with a run under way: sending, or paused midway.
ACTIVE_STATUSES = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
FORM_FIELDS = (
    "name",
    "template",
    "variables",
    "title",
    "body",
    "data",
    "parts",
    "targeting_criteria",
    "scheduled_at",
    "schedule",
    "throttle_per_minute",
    "priority",
    "ttl",
)
LATEST_RUN_FIELDS = ("status", "targeted", "pending", "audience_estimate")
# The services name fields as the API does; where each is on the form.
API_NAMES = {"template_id": "template", **dict.fromkeys(PART_NAMES, "parts")}


def _problems(errors: dict) -> list[str]:
    """{key: [messages]} from criteria_clean / schedule_clean as form messages naming the key."""
    return [f"{key}: {message}" for key, problems in errors.items() for message in problems]


def _actor(request) -> str:
    return f"admin:{request.user.get_username()}"


def run_progress(run: CampaignRun) -> float:
    """The API's progress of a run (share of its audience whose messages are terminal)."""
    return selectors.run_progress(run)


def schedule_summary(campaign: Campaign) -> str:
    if campaign.schedule:
        return f"cron {campaign.schedule['crontab']} ({campaign.schedule['timezone']})"
    if campaign.scheduled_at:
        moment = timezone.localtime(campaign.scheduled_at)
        return f"once at {moment:%Y-%m-%d %H:%M %Z}"
    return "—"


class TemplateChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: MessageTemplate) -> str:
        return f"{obj.name} ({obj.application})"


class CampaignForm(StorableTextForm):
    template = TemplateChoiceField(
        queryset=MessageTemplate.objects.filter(deleted_at__isnull=True).select_related(
            "application"
        ),
        required=False,
        help_text="A template of the same application, or leave empty and give title/body/data.",
    )
    variables = StorableJSONField(
        required=False, initial=dict, help_text='The template\'s variables: {"name": "value"}.'
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
    targeting_criteria = StorableJSONField(
        required=False,
        initial=dict,
        help_text='e.g. {"tags": {"plan": "gold"}, "last_active_after": '
        '"2026-10-01T00:00:00Z", "countries": ["KR"], "languages": ["ko"], '
        f'"channels": [{", ".join(map(json.dumps, CHANNELS))}]}}; {{}} targets every enabled '
        "subscription.",
    )
    schedule = StorableJSONField(
        required=False,
        help_text='Recurring: {"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"}. '
        "Leave empty for a one-off campaign.",
    )
    throttle_per_minute = forms.IntegerField(required=False, min_value=1, max_value=10_000_000)
    priority = forms.ChoiceField(choices=Message.Priority.choices, initial="normal")
    ttl = forms.IntegerField(required=False, min_value=0, max_value=MAX_TTL, help_text="Seconds.")

    class Meta:
        model = Campaign
        fields = ["application", *FORM_FIELDS]

    def clean_variables(self):
        return self._object("variables")

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

    def clean_targeting_criteria(self):
        try:
            return criteria_clean(self.cleaned_data.get("targeting_criteria") or {})
        except CriteriaInvalid as exc:
            raise forms.ValidationError(_problems(exc.errors)) from exc

    def clean_schedule(self):
        try:
            return schedule_clean(self.cleaned_data.get("schedule") or None)
        except ScheduleInvalid as exc:
            raise forms.ValidationError(_problems(exc.errors)) from exc

    def clean(self):
        cleaned = super().clean()
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
        return {name: self.cleaned_data[name] for name in FORM_FIELDS} | {
            "parts": self._all_parts()
        }


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = [
        "name",
        "status",
        "application",
        "schedule_display",
        "latest_run_progress",
        "created_at",
    ]
    list_filter = ["status", "application"]
    search_fields = ["name"]
    list_select_related = ["application"]
    readonly_fields = ["id", "status", "created_at", "updated_at"]
    actions = ["execute_selected", "cancel_selected", "pause_selected", "resume_selected"]
    change_form_template = "admin/campaigns/campaign/change_form.html"

    def get_queryset(self, request):
        latest = CampaignRun.objects.filter(campaign=OuterRef("pk")).order_by("-number")
        return (
            super()
            .get_queryset(request)
            .select_related("application", "template")
            .annotate(
                **{
                    f"latest_run_{name}": Subquery(latest.values(name)[:1])
                    for name in LATEST_RUN_FIELDS
                }
            )
        )

    def get_fieldsets(self, request, obj=None):
        head = ["id", "application", "name", "status"] if obj else ["application", "name"]
        return [
            (None, {"fields": head}),
            (
                "Content",
                {
                    "fields": ["template", "variables", "title", "body", "data", "parts"],
                    "description": "A template with its variables, or literal title/body/data "
                    "and channel parts.",
                },
            ),
            ("Audience", {"fields": ["targeting_criteria"]}),
            (
                "Schedule",
                {
                    "fields": ["scheduled_at", "schedule"],
                    "description": "Neither: the campaign runs only when executed.",
                },
            ),
            ("Delivery", {"fields": ["throttle_per_minute", "priority", "ttl"]}),
            *([("Record", {"fields": ["created_at", "updated_at"]})] if obj else []),
        ]

    def get_readonly_fields(self, request, obj=None):
        # A campaign stays with its application, like its template and its messages.
        return [*self.readonly_fields, "application"] if obj else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        # Running and finished campaigns are shown read-only: their content is what was sent.
        if obj is not None and obj.status not in EDITABLE_STATUSES:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status in ACTIVE_STATUSES:
            return False  # cancel it first
        return super().has_delete_permission(request, obj)

    # --- Changelist ------------------------------------------------------------------------

    @admin.display(description="schedule")
    def schedule_display(self, obj: Campaign) -> str:
        return schedule_summary(obj)

    @admin.display(description="latest run")
    def latest_run_progress(self, obj: Campaign) -> str:
        status = getattr(obj, "latest_run_status", None)
        if status is None:
            return "—"
        run = CampaignRun(
            **{name: getattr(obj, f"latest_run_{name}") for name in LATEST_RUN_FIELDS}
        )
        return f"{status} {run_progress(run):.0%}"

    # --- Saving through the services ---------------------------------------------------------

    def save_model(self, request, obj, form, change):
        fields = form.service_fields()
        if change:
            services.campaign_update(campaign=obj, **fields)
            obj.refresh_from_db()
            return
        campaign = services.campaign_create(application=form.cleaned_data["application"], **fields)
        obj.pk = campaign.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # no relations are edited here; the runs are the service's

    def delete_model(self, request, obj):
        task = obj.periodic_task
        super().delete_model(request, obj)
        if task is not None:
            task.delete()

    def delete_queryset(self, request, queryset):
        for campaign in queryset.select_related("periodic_task"):
            self.delete_model(request, campaign)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError as exc:
            # The campaign moved on (executed elsewhere) between the page and the save.
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    # --- The change page: preview, progress, runs, buttons ----------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, object_id)
        if campaign is not None:
            extra_context = {**(extra_context or {}), **self._console(request, campaign)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _console(self, request, campaign: Campaign) -> dict[str, Any]:
        try:
            preview = services.campaign_preview(campaign=campaign)
            preview_error = None
        except ApplicationError as exc:
            preview, preview_error = None, exc.message
        if preview:
            for item in preview["sample"]:
                item["data_json"] = json.dumps(item.get("data") or {}, ensure_ascii=False)
                item["channel_content_json"] = json.dumps(
                    item["channel_content"], indent=1, ensure_ascii=False
                )
        runs = list(selectors.campaign_runs(campaign=campaign))
        history = [
            {"run": run, "progress": run_progress(run), "stats": run.stats()} for run in runs
        ]
        return {
            "campaign": campaign,
            "preview": preview,
            "preview_error": preview_error,
            "latest": history[0] if history else None,
            "history": history,
            "totals": selectors.campaign_stats(campaign=campaign),
            "schedule_summary": schedule_summary(campaign),
            "auto_refresh": campaign.status in ACTIVE_STATUSES,
            "can_edit": campaign.status in EDITABLE_STATUSES,
            "can_execute": campaign.status in EDITABLE_STATUSES,
            "can_cancel": campaign.status in (*EDITABLE_STATUSES, *ACTIVE_STATUSES),
            "execute_url": reverse("admin:campaigns_campaign_execute", args=[campaign.pk]),
            "cancel_url": reverse("admin:campaigns_campaign_cancel", args=[campaign.pk]),
        }

    def get_urls(self):
        return [
            path(
                "<path:object_id>/execute/",
                self.admin_site.admin_view(self.execute_view),
                name="campaigns_campaign_execute",
            ),
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="campaigns_campaign_cancel",
            ),
            *super().get_urls(),
        ]

    def execute_view(self, request, object_id):
        return self._button(request, object_id, self._execute, "Execute", self._will_execute)

    def cancel_view(self, request, object_id):
        return self._button(request, object_id, self._cancel, "Cancel", self._will_cancel)

    def _button(self, request, object_id, operation, verb: str, consequences):
        """The change page's buttons: a GET, or a POST without `confirm`, gets the page that
        says what will happen; only the confirmed POST acts."""
        if not super().has_change_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=object_id)
        page = confirmation(
            self,
            request,
            title=f"{verb} campaign {campaign}",
            consequences=consequences(campaign),
            objects=[campaign],
            action_url=request.path,
            button=f"{verb} the campaign",
        )
        if page:
            return page
        try:
            message = operation(request, campaign)
        except ApplicationError as exc:
            self.message_user(request, f"{campaign}: {exc.message}", messages.ERROR)
        else:
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def _execute(self, request, campaign: Campaign) -> str:
        run = services.campaign_execute(campaign=campaign)
        return f"{campaign}: run {run.number} started."

    def _cancel(self, request, campaign: Campaign) -> str:
        services.campaign_cancel(campaign=campaign, actor=_actor(request))
        return f"{campaign}: cancelled; its unsent messages are being cancelled."

    def _will_execute(self, campaign: Campaign) -> list[str]:
        if campaign.status not in EDITABLE_STATUSES:
            return [f"Nothing: a {campaign.status} campaign cannot be executed."]
        try:
            preview = services.campaign_preview(campaign=campaign, sample_size=0)
        except ApplicationError as exc:
            return [f"{campaign}: start a run now; its audience cannot be counted: {exc.message}"]
        channels = ", ".join(f"{name}: {n}" for name, n in preview["by_channel"].items())
        return [
            f"{campaign}: start a run now, sending one message to each of about "
            f"{preview['audience_size']} subscriptions" + (f" ({channels})." if channels else "."),
            "Messages handed to the providers cannot be called back; cancelling stops the rest.",
        ]

    def _will_cancel(self, campaign: Campaign) -> list[str]:
        if campaign.status not in (*EDITABLE_STATUSES, *ACTIVE_STATUSES):
            return [f"Nothing: a {campaign.status} campaign cannot be cancelled."]
        will = [f"{campaign}: becomes cancelled and is never run again by its schedule."]
        if campaign.status in ACTIVE_STATUSES:
            run = selectors.campaign_latest_run(campaign=campaign)
            pending = run.pending if run else 0
            will.append(
                f"Its {pending} message(s) not yet sent are cancelled; those already sent stay."
            )
        return will

    # --- Changelist actions ----------------------------------------------------------------

    def _each(self, request, queryset, operation, done: str) -> None:
        succeeded = 0
        for campaign in queryset:
            try:
                operation(request, campaign)
            except ApplicationError as exc:
                self.message_user(request, f"{campaign}: {exc.message}", messages.ERROR)
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, f"{done} {succeeded} campaign(s).", messages.SUCCESS)

    def _confirmed_each(
        self, request, queryset, action: str, verb: str, done: str, operation, consequences
    ):
        campaigns = list(queryset)
        page = confirmation(
            self,
            request,
            title=f"{verb} campaigns",
            consequences=[line for c in campaigns for line in consequences(c)],
            objects=campaigns,
            action=action,
            button=f"{verb} {len(campaigns)} campaign(s)",
        )
        if page:
            return page
        self._each(request, campaigns, operation, done)
        return None

    @admin.action(description="Execute the selected campaigns now")
    def execute_selected(self, request, queryset):
        return self._confirmed_each(
            request,
            queryset,
            "execute_selected",
            "Execute",
            "Executed",
            self._execute,
            self._will_execute,
        )

    @admin.action(description="Cancel the selected campaigns")
    def cancel_selected(self, request, queryset):
        return self._confirmed_each(
            request,
            queryset,
            "cancel_selected",
            "Cancel",
            "Cancelled",
            self._cancel,
            self._will_cancel,
        )

    def _pause(self, request, campaign: Campaign) -> str:
        services.campaign_pause(campaign=campaign, actor=_actor(request))
        return f"{campaign}: paused."

    def _resume(self, request, campaign: Campaign) -> str:
        services.campaign_resume(campaign=campaign, actor=_actor(request))
        return f"{campaign}: resumed."

    def _will_pause(self, campaign: Campaign) -> list[str]:
        if campaign.status != CampaignStatus.RUNNING:
            return [f"Nothing: a {campaign.status} campaign cannot be paused."]
        return [
            f"{campaign}: no new batch of its run starts until it is resumed; messages "
            "already queued are still sent."
        ]

    def _will_resume(self, campaign: Campaign) -> list[str]:
        if campaign.status != CampaignStatus.PAUSED:
            return [f"Nothing: a {campaign.status} campaign cannot be resumed."]
        return [f"{campaign}: its run goes on where it stopped, one message per subscription."]

    @admin.action(description="Pause the selected running campaigns")
    def pause_selected(self, request, queryset):
        return self._confirmed_each(
            request, queryset, "pause_selected", "Pause", "Paused", self._pause, self._will_pause
        )

    @admin.action(description="Resume the selected paused campaigns")
    def resume_selected(self, request, queryset):
        return self._confirmed_each(
            request,
            queryset,
            "resume_selected",
            "Resume",
            "Resumed",
            self._resume,
            self._will_resume,
        )


@admin.register(CampaignRun)
class CampaignRunAdmin(admin.ModelAdmin):
    list_display = [
        "campaign",
        "number",
        "trigger",
        "status",
        "progress",
        "targeted",
        "pending",
        "successful",
        "failed",
        "received",
        "converted",
        "cancelled",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger"]
    search_fields = ["campaign__name", "=campaign__id"]
    list_select_related = ["campaign"]
    readonly_fields = [f.name for f in CampaignRun._meta.fields]

    def has_add_permission(self, request):
        return False  # runs are started by executing their campaign

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, obj: CampaignRun) -> str:
        return f"{run_progress(obj):.0%}"
