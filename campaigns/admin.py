"""The campaign managers' console: write a campaign (through the same services as the API, so
its beat task follows), preview its audience, execute or cancel it, watch its runs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cron_descriptor import get_description
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.admin_kit import (
    EMPTY,
    AdminMedia,
    ReadOnlyAdmin,
    changelist_url,
    confirmation,
    linked,
    short_id,
    zoned,
)
from core.exceptions import ApplicationError
from messaging import admin as messaging_admin

from . import selectors, services
from .forms import CRON_FORM_FIELDS, TARGETING_FIELDS, CampaignForm, lines_format
from .local_time import LOCAL_TIME
from .models import ACTIVE_STATUSES, Campaign, CampaignRun, CampaignStatus
from .schedules import next_runs

EDITABLE_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
# A campaign in one of these never runs again.
FINISHED_STATUSES = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)
LATEST_RUN_FIELDS = ("status", "targeted", "pending", "audience_estimate")
NEXT_RUNS = 3


def _actor(request) -> str:
    return f"admin:{request.user.get_username()}"


def run_progress(run: CampaignRun) -> float:
    """The API's progress of a run (share of its audience whose messages are terminal)."""
    return selectors.run_progress(run)


def schedule_summary(campaign: Campaign) -> str:
    if campaign.schedule:
        return f"cron {campaign.schedule['crontab']} ({campaign.schedule['timezone']})"
    if campaign.scheduled_at:
        return f"once at {zoned(campaign.scheduled_at, seconds=False)}"
    return EMPTY


def describe_crontab(crontab: str) -> str:
    """A crontab in words ("At 09:00 AM, only on Monday"), as django-celery-beat shows it."""
    try:
        return get_description(crontab)
    except Exception:  # noqa: BLE001 (a description is a nicety; the expression is valid)
        return crontab


def campaign_messages_url(campaign_id, run_id=None) -> str:
    """The message changelist filtered to a campaign's messages, or one run's."""
    if run_id is not None:
        return changelist_url("messaging", "message", campaign_run_id=run_id)
    return changelist_url("messaging", "message", campaign_id=campaign_id)


def percent(rate: float | None) -> str:
    return EMPTY if rate is None else f"{rate:.1%}"


def funnel_table(
    stats: dict[str, Any], reasons: dict | None, *, html_id: str, waiting: int | None = None
) -> str:
    """The funnel of a run or campaign as an HTML table: delivered (successful + received +
    converted), failed (with its error codes when given), received (received + converted),
    converted, each with its rate, then pending (and, given `waiting`, how many of them wait
    for their time now), cancelled, and the audience members the recipients' rules left
    out (when `stats` has `skipped`)."""
    f = selectors.funnel(stats)
    failed_detail = ""
    if reasons and reasons["reasons"]:
        failed_detail = format_html(
            '<ul class="signal-reasons">{}{}</ul>{}',
            format_html_join(
                "",
                '<li><code class="failure-code">{}</code>: <span class="failure-count">{}</span>'
                "</li>",
                reasons["reasons"],
            ),
            format_html("<li>other codes: {}</li>", reasons["others"]) if reasons["others"] else "",
            format_html(
                '<p class="help">Counted over the newest {} failed messages.</p>',
                selectors.FAILURE_SAMPLE,
            )
            if reasons["sampled"]
            else "",
        )
    rows = [
        ("targeted", f["targeted"], "", "Messages made for the audience so far"),
        ("delivered", f["delivered"], percent(f["delivered_rate"]), "of targeted"),
        ("failed", f["failed"], failed_detail, ""),
        ("received", f["received"], percent(f["received_rate"]), "of delivered"),
        ("converted", f["converted"], percent(f["converted_rate"]), "of delivered"),
        ("pending", f["pending"], "", "Not sent yet"),
    ]
    if waiting is not None:
        more = "+" if waiting >= selectors.WAITING_COUNT_MAX else ""
        rows.append(
            ("waiting", f"{waiting}{more}", "", "Of pending: waiting for their time now "
             "(local-time delivery, quiet hours)")
        )  # fmt: skip
    rows.append(("cancelled", f["cancelled"], "", ""))
    if "skipped" in stats:
        reasons_text = ", ".join(
            f"{reason.replace('_', ' ')}: {count}"
            for reason, count in stats["skipped_by_reason"].items()
        )
        rows.append(
            ("skipped", stats["skipped"], reasons_text, "Left out by the recipients' rules: "
             "no message")
        )  # fmt: skip
    return format_html(
        '<table class="signal-funnel" id="{}"><tr><th>Stage</th><th class="num">Messages</th>'
        "<th>Rate / detail</th></tr>{}</table>",
        html_id,
        format_html_join(
            "",
            '<tr class="funnel-{}"><th>{}</th><td class="num" data-stage="{}">{}</td>'
            '<td class="rate">{} <span class="help">{}</span></td></tr>',
            ((name, name, name, value, detail, note) for name, value, detail, note in rows),
        ),
    )


def _campaign_message_search(term: str) -> list:
    """Ids of campaigns whose name contains `term` (the message list searches by them)."""
    return list(Campaign.objects.filter(name__icontains=term).values_list("pk", flat=True)[:100])


# The message list searches campaigns by name through this (messaging does not import campaigns).
messaging_admin.MessageAdmin.campaign_search = staticmethod(_campaign_message_search)


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm

    class Media:
        css = AdminMedia.css
        js = ["campaigns/campaign_form.js"]

    list_display = [
        "name",
        "status",
        "application",
        "schedule_display",
        "latest_run_progress",
        "created_at",
    ]
    list_filter = ["status", "application"]
    search_fields = ["name", "=id"]
    list_select_related = ["application"]
    readonly_fields = [
        "id",
        "status",
        "created_at",
        "updated_at",
        "audience_display",
        "variables_display",
        "criteria_json",
        "schedule_display",
        "next_runs_display",
        "runs_link",
        "local_time_display",
    ]
    actions = ["execute_selected", "cancel_selected", "pause_selected", "resume_selected"]
    change_form_template = "admin/campaigns/campaign/change_form.html"

    def get_queryset(self, request):
        latest = CampaignRun.objects.filter(campaign=OuterRef("pk")).order_by("-number")
        return (
            super()
            .get_queryset(request)
            .select_related("application", "template__current")
            .annotate(
                **{
                    f"latest_run_{name}": Subquery(latest.values(name)[:1])
                    for name in LATEST_RUN_FIELDS
                }
            )
        )

    def get_fieldsets(self, request, obj=None):
        editable = obj is None or obj.status in EDITABLE_STATUSES
        head = (
            ["id", "application", "name", "status", "runs_link"] if obj else ["application", "name"]
        )
        if editable:
            audience = list(TARGETING_FIELDS)
            # The five crontab fields on one line, as a crontab is written.
            schedule = ["scheduled_at", "schedule_preset", CRON_FORM_FIELDS, "schedule_timezone"]
            variables = ["variables"]
        else:  # what was sent, read-only
            audience, schedule, variables = (
                ["audience_display"],
                ["schedule_display"],
                ["variables_display"],
            )
        if obj:
            audience = [*audience, "criteria_json"]
            schedule = [*schedule, "next_runs_display"]
        return [
            (None, {"fields": head}),
            (
                "Content",
                {
                    "fields": ["template", *variables, "title", "body", "data", "parts"],
                    "description": "A template with its variables, or literal title/body/data "
                    "and channel parts.",
                },
            ),
            (
                "Audience",
                {
                    "fields": audience,
                    "description": "The enabled subscriptions of the application that match "
                    "every criterion given; none given: all of them.",
                },
            ),
            (
                "Schedule",
                {
                    "fields": schedule,
                    "description": "Once at a time, or recurring; neither: the campaign runs "
                    "only when executed.",
                },
            ),
            (
                "Delivery",
                {
                    "fields": [
                        "category",
                        "local_time" if editable else "local_time_display",
                        "throttle_per_minute",
                        "priority",
                        "ttl",
                    ]
                },
            ),
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

    # --- Read-only views of the stored JSON -----------------------------------------------------

    @admin.display(description="audience")
    def audience_display(self, obj: Campaign) -> str:
        criteria = obj.targeting_criteria or {}
        if not criteria:
            return "Every enabled subscription of the application."
        rows = []
        for key in ("tags", "user_tags"):
            if criteria.get(key):
                tags = ", ".join(f"{k}={v}" for k, v in criteria[key].items())
                rows.append((key.replace("_", " "), tags))
        for key in ("countries", "languages", "channels"):
            if criteria.get(key):
                rows.append((key, ", ".join(criteria[key])))
        if criteria.get("last_active_after"):
            moment = datetime.fromisoformat(criteria["last_active_after"])
            rows.append(("last active after", zoned(moment)))
        return format_html_join("", "<div><strong>{}</strong>: {}</div>", rows)

    @admin.display(description="variables")
    def variables_display(self, obj: Campaign) -> str:
        text = lines_format(obj.variables)
        return format_html('<pre class="signal-json">{}</pre>', text) if text else EMPTY

    @admin.display(description="local time")
    def local_time_display(self, obj: Campaign) -> str:
        clock = (obj.delivery or {}).get(LOCAL_TIME)
        return f"{clock} on each recipient's clock" if clock else "At once"

    @admin.display(description="stored criteria (JSON)")
    def criteria_json(self, obj: Campaign) -> str:
        return format_html(
            '<pre class="signal-json" id="campaign-criteria-json">{}</pre>',
            json.dumps(obj.targeting_criteria or {}, indent=2, ensure_ascii=False),
        )

    @admin.display(description="next runs")
    def next_runs_display(self, obj: Campaign) -> str:
        if obj.schedule:
            if obj.status in FINISHED_STATUSES:
                return f"None: the campaign is {obj.status}."
            times = next_runs(obj.schedule, count=NEXT_RUNS)
            return format_html(
                '<div>{}</div><ol id="campaign-next-runs">{}</ol>',
                describe_crontab(obj.schedule["crontab"]) + f" ({obj.schedule['timezone']})",
                format_html_join(
                    "",
                    '<li>{} <span class="help">({})</span></li>',
                    (
                        (t.strftime("%Y-%m-%d %H:%M %Z (%a)"), zoned(t, seconds=False))
                        for t in times
                    ),
                ),
            )
        if obj.scheduled_at:
            return f"Once, at {zoned(obj.scheduled_at, seconds=False)}."
        return "Not scheduled: runs only when executed."

    @admin.display(description="runs and messages")
    def runs_link(self, obj: Campaign) -> str:
        if obj.pk is None:
            return EMPTY
        return format_html(
            '<a href="{}" id="campaign-runs-link">its runs</a> · '
            '<a href="{}" id="campaign-messages-link">its messages</a>',
            changelist_url("campaigns", "campaignrun", campaign__id__exact=obj.pk),
            campaign_messages_url(obj.pk),
        )

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
            {
                "run": run,
                "progress": run_progress(run),
                "stats": run.stats() | run.skips(),
                "funnel": selectors.funnel(run.stats()),
                "url": reverse("admin:campaigns_campaignrun_change", args=[run.pk]),
                "messages_url": campaign_messages_url(campaign.pk, run.pk),
            }
            for run in runs
        ]
        totals = selectors.campaign_stats(campaign=campaign)
        reasons = selectors.failure_reasons(campaign_id=campaign.pk) if totals["failed"] else None
        return {
            "campaign": campaign,
            "preview": preview,
            "preview_error": preview_error,
            "latest": history[0] if history else None,
            "history": history,
            "totals": totals,
            "funnel": selectors.funnel(totals),
            "funnel_table": funnel_table(totals, reasons, html_id="campaign-funnel"),
            "latest_funnel_table": (
                funnel_table(
                    history[0]["stats"],
                    None,
                    html_id="campaign-latest-funnel",
                    waiting=selectors.run_waiting(runs[0]),
                )
                if history
                else ""
            ),
            "messages_url": campaign_messages_url(campaign.pk),
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
        run = services.campaign_execute(campaign=campaign, actor=_actor(request))
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
class CampaignRunAdmin(ReadOnlyAdmin, admin.ModelAdmin):  # runs start by executing a campaign
    Media = AdminMedia
    list_display = [
        "run_short",
        "campaign_link",
        "number",
        "trigger",
        "status",
        "progress",
        "targeted",
        "pending",
        "delivered",
        "failed",
        "received_total",
        "converted",
        "cancelled",
        "started_at",
        "finished_at",
    ]
    list_display_links = ["run_short"]
    list_filter = ["status", "trigger"]
    search_fields = ["campaign__name", "=campaign__id"]
    list_select_related = ["campaign"]
    fields = [
        "id",
        "campaign_link",
        "number",
        "trigger",
        "status",
        "template_version_link",
        "messages_link",
        "funnel_display",
        "progress",
        "audience_estimate",
        "batches_done",
        "fanout_done",
        "error",
        "started_at",
        "updated_at",
        "finished_at",
    ]
    readonly_fields = fields

    @admin.display(description="run")
    def run_short(self, obj: CampaignRun) -> str:
        return short_id(obj.pk)

    @admin.display(description="campaign", ordering="campaign__name")
    def campaign_link(self, obj: CampaignRun) -> str:
        return linked("campaigns", "campaign", obj.campaign_id, obj.campaign.name)

    @admin.display(description="template version")
    def template_version_link(self, obj: CampaignRun) -> str:
        if obj.template_version_id is None:
            return EMPTY
        return linked(
            "templates_app", "templateversion", obj.template_version_id, str(obj.template_version)
        )

    @admin.display(description="messages")
    def messages_link(self, obj: CampaignRun) -> str:
        return format_html(
            '<a href="{}" id="run-messages-link">the messages of this run</a>',
            campaign_messages_url(obj.campaign_id, obj.pk),
        )

    @admin.display(description="funnel")
    def funnel_display(self, obj: CampaignRun) -> str:
        reasons = (
            selectors.failure_reasons(campaign_id=obj.campaign_id, run_id=obj.pk)
            if obj.failed
            else None
        )
        return funnel_table(
            obj.stats() | obj.skips(),
            reasons,
            html_id="run-funnel",
            waiting=selectors.run_waiting(obj),
        )

    @admin.display(description="progress")
    def progress(self, obj: CampaignRun) -> str:
        return f"{run_progress(obj):.0%}"

    @admin.display(description="delivered")
    def delivered(self, obj: CampaignRun) -> int:
        return selectors.funnel(obj.stats())["delivered"]

    @admin.display(description="received", ordering="received")
    def received_total(self, obj: CampaignRun) -> int:
        return selectors.funnel(obj.stats())["received"]
