"""Campaign writes: create, update, execute, pause, resume, cancel; the fan-out of a run in
batches; and the statistics that follow its messages."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import structlog
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F
from django.utils import timezone
from django_fsm import can_proceed

from accounts import audit
from accounts.models import Application
from accounts.selectors import channel_credentials_get
from core import channels
from core.channels import PART_NAMES, parts_check
from core.exceptions import ContentInvalid, InvalidTransition, QuotaExceeded, ValidationFailed
from core.validation import MAX_JSON_BYTES, InputInvalid, check_json, check_text
from core.zones import zone_of
from messaging import dispatch, rules
from messaging.channel_content import channel_content
from messaging.models import Message, MessageStatus
from messaging.services.messages import (
    MAX_BODY_LENGTH,
    MAX_DATA_BYTES,
    MAX_TITLE_LENGTH,
    MAX_VARIABLES_BYTES,
    Content,
    ContentFor,
    Delivery,
    message_send,
    messages_cancel,
    render_content,
    rendered_content,
)
from templates_app.kakao import kakao_preview
from templates_app.rendering import compiled, render
from templates_app.selectors import template_get

from . import local_time, schedules, targeting
from .models import SKIP_FIELDS, Campaign, CampaignRun, CampaignStatus, RunStatus

logger = logging.getLogger(__name__)

CONTENT_FIELDS = ("template", "variables", "title", "body", "data", "parts")
# How far ahead a one-off campaign may be scheduled.
SCHEDULED_AT_MAX_AHEAD = timedelta(days=365)
EDITABLE_FIELDS = (
    "name",
    *CONTENT_FIELDS,
    "targeting_criteria",
    "scheduled_at",
    "schedule",
    "throttle_per_minute",
    "priority",
    "ttl",
    "category",
    "delivery",
)


def _refuse(campaign: Campaign, action: str) -> InvalidTransition:
    return InvalidTransition(
        f"A {campaign.status} campaign cannot be {action}.",
        details={"status": campaign.status},
    )


def _content_check(campaign: Campaign, contents: list[Content]) -> None:
    """Each channel's content rule (ChannelSpec.content_check) over the campaign's contents,
    for the channels it means: those whose part it has, those its targeting names, and, when
    it names none, those that need their part (KakaoTalk) and are in its audience (a
    query each). Otherwise the content is checked where it goes to a channel, in the fan-out
    (message_send)."""
    specs = [spec for spec in channels.SPECS.values() if spec.content_check]
    named = (campaign.targeting_criteria or {}).get("channels")
    meant = {
        spec.type
        for spec in specs
        if (spec.part and any(c.parts.get(spec.part) for c in contents))
        or (named and spec.type in named)
    }
    if not named:
        for spec in specs:
            if spec.part_required and spec.type not in meant:
                audience = targeting.audience(
                    campaign.application, campaign.targeting_criteria or {}
                )
                if audience.filter(type=spec.type).exists():
                    meant.add(spec.type)
    for spec in specs:
        if spec.type in meant:
            try:
                spec.check_content(application=campaign.application, contents=contents)
            except InputInvalid as exc:
                raise ContentInvalid(exc.message, details=exc.errors) from exc


def campaign_content_check(*, campaign: Campaign):
    """Checks the campaign's content: its literal channel parts, or its template's content
    rendered in every language of the template's current version with the campaign's
    variables (over the limits of a message: ContentInvalid naming the template and the
    field); and each meant channel's content rule (_content_check). Returns the template version
    (None without a template)."""
    if not campaign.template_id:
        try:
            parts_check(campaign.parts)
        except InputInvalid as exc:
            raise ContentInvalid(exc.message, details=exc.errors) from exc
        _content_check(campaign, [_literal(campaign)])
        return None
    version = template_get(application=campaign.application, template_id=campaign.template_id)
    contents = [
        render_content(version, campaign.variables, language)
        for language in compiled(version).contents
    ]
    _content_check(campaign, contents)
    return version


def _literal(campaign: Campaign) -> Content:
    return Content(
        title=campaign.title, body=campaign.body, data=campaign.data, parts=campaign.parts
    )


def _without_empty(parts: dict) -> dict:
    return {name: part for name, part in parts.items() if part}


# The rules of a campaign's fields. Errors name the fields as the API does (`template_id`,
# a channel part by its name, `non_field_errors` for the campaign as a whole); the admin
# maps them onto its form.
BOTH_CONTENTS = (
    "Give either template_id or content of your own (title, body, data, channel parts), not both."
)
BOTH_SCHEDULES = "Give scheduled_at (once) or schedule (recurring), not both."
NO_CONTENT = "A campaign needs a template_id, a title, a body, data or a channel part."
NOT_IN_THE_FUTURE = "Must be in the future."
FOREIGN_TEMPLATE = "Choose a template of the campaign's application."
_TEXT_LIMITS = {"title": MAX_TITLE_LENGTH, "body": MAX_BODY_LENGTH}
_JSON_LIMITS = {
    "variables": MAX_VARIABLES_BYTES,
    "data": MAX_DATA_BYTES,
    "targeting_criteria": MAX_JSON_BYTES,
    "schedule": MAX_JSON_BYTES,
}


def _literal_given(fields: Mapping[str, Any]) -> list[str]:
    """The names (the API's) of the content of one's own that `fields` give, non-empty."""
    given = [name for name in ("title", "body", "data") if fields.get(name)]
    parts = fields.get("parts") or {}
    return given + [name for name in PART_NAMES if parts.get(name)]


def _scheduled_at_problem(moment: datetime | None, stored: datetime | None) -> str | None:
    # An unchanged time that has passed is the record of a run that happened (or is due).
    if moment is None or moment == stored:
        return None
    now = timezone.now()
    if moment <= now:
        return NOT_IN_THE_FUTURE
    latest = now + SCHEDULED_AT_MAX_AHEAD
    if moment > latest:
        return (
            f"At most {SCHEDULED_AT_MAX_AHEAD.days} days ahead "
            f"(until {latest.replace(microsecond=0).isoformat()})."
        )
    return None


def _fields_problems(fields: Mapping[str, Any], stored_at: datetime | None) -> dict[str, list[str]]:
    """Each given value on its own: text and JSON within their limits, a time ahead."""
    errors: dict[str, list[str]] = {}
    for name, limit in _TEXT_LIMITS.items():
        if fields.get(name):
            try:
                check_text(fields[name], field=name, max_length=limit)
            except InputInvalid as exc:
                errors |= exc.errors
    for name, limit in _JSON_LIMITS.items():
        if fields.get(name) is not None:
            try:
                check_json(fields[name], field=name, max_bytes=limit)
            except InputInvalid as exc:
                errors |= exc.errors
    if problem := _scheduled_at_problem(fields.get("scheduled_at"), stored_at):
        errors["scheduled_at"] = [problem]
    if "delivery" in fields:
        try:
            local_time.delivery_clean(fields["delivery"])
        except InputInvalid as exc:
            errors |= exc.errors
    return errors


def _rules_check(
    campaign: Campaign, fields: Mapping[str, Any], *, stored_at: datetime | None = None
) -> None:
    """The rules of what `fields` make of the campaign (`campaign` with them applied, unsaved;
    `stored_at` its scheduled_at before): a template or content of one's own, not both;
    scheduled_at or schedule, not both; some content left; a template of the campaign's
    application. Raises ValidationFailed naming every field that breaks one."""
    errors = _fields_problems(fields, stored_at)
    if fields.get("category"):
        try:  # a key of the application's categories
            rules.rules_for(application=campaign.application, category=fields["category"])
        except InputInvalid as exc:
            errors |= exc.errors
    template = fields.get("template")
    if template is not None:
        errors |= dict.fromkeys(_literal_given(fields), [BOTH_CONTENTS])
        if template.application_id != campaign.application_id:
            errors["template_id"] = [FOREIGN_TEMPLATE]
    if campaign.scheduled_at and campaign.schedule:
        errors["schedule"] = [BOTH_SCHEDULES]
    own = {name: getattr(campaign, name) for name in ("title", "body", "data", "parts")}
    if not campaign.template_id and not _literal_given(own):
        errors["non_field_errors"] = [NO_CONTENT]
    if errors:
        raise ValidationFailed(details=errors)


def _stored(name: str, value: Any) -> Any:
    """A field's value as the model stores it: null category and delivery are none."""
    if name == "category":
        return value or ""
    if name == "delivery":
        return value or {}
    return value


def _new(application: Application, fields: Mapping[str, Any]) -> Campaign:
    fields = {name: _stored(name, value) for name, value in fields.items()}
    if "parts" in fields:
        fields["parts"] = _without_empty(fields["parts"] or {})
    return Campaign(application=application, **fields)


def _changed(campaign: Campaign, fields: Mapping[str, Any]) -> Campaign:
    """Applies `fields` to `campaign` (in memory) as campaign_update does."""
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        raise _refuse(campaign, "changed")
    for name, value in fields.items():
        if name == "parts":
            value = _without_empty({**campaign.parts, **(value or {})})
        setattr(campaign, name, _stored(name, value))
    # Content is a template or literal content, never both: the newer choice replaces the
    # other.
    if fields.get("template") is not None:
        campaign.title, campaign.body, campaign.data, campaign.parts = "", "", {}, {}
    elif _literal_given(fields):
        campaign.template, campaign.variables = None, {}
    return campaign


def campaign_validate(
    *, application: Application, campaign: Campaign | None = None, **fields: Any
) -> None:
    """Checks what campaign_create (without `campaign`) or campaign_update would store with
    `fields`, storing nothing: the errors they would raise (ValidationFailed naming the
    fields, ContentInvalid, InvalidTransition). The admin shows them as form errors."""
    if campaign is None:
        candidate, stored_at = _new(application, fields), None
    else:
        candidate = Campaign.objects.get(pk=campaign.pk)  # a copy to change in memory
        stored_at = candidate.scheduled_at
        _changed(candidate, fields)
    _rules_check(candidate, fields, stored_at=stored_at)
    campaign_content_check(campaign=candidate)


def campaign_create(*, application: Application, **fields: Any) -> Campaign:
    """Creates a campaign, `scheduled` when it has scheduled_at or a schedule (with its beat
    task), else `draft`. Criteria and schedule must be cleaned (targeting.criteria_clean,
    schedules.schedule_clean); fields that break a campaign's rules raise ValidationFailed
    naming them, template content that renders over a message's limits ContentInvalid."""
    with transaction.atomic():
        campaign = _new(application, fields)
        _rules_check(campaign, fields)
        campaign_content_check(campaign=campaign)
        if campaign.scheduled_at or campaign.schedule:
            campaign.schedule_runs()
        campaign.save()
        schedules.periodic_task_sync(campaign)
        campaign.save(update_fields=["periodic_task"])
    return campaign


def campaign_update(*, campaign: Campaign, **fields: Any) -> Campaign:
    """Changes a draft or scheduled campaign (moving or dropping its schedule too). `parts`
    changes the channel parts it names, each replaced whole (`{}` removes one); a template
    replaces content of one's own and the other way round. Refuses as campaign_create."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        stored_at = campaign.scheduled_at
        _changed(campaign, fields)
        _rules_check(campaign, fields, stored_at=stored_at)
        campaign_content_check(campaign=campaign)
        has_schedule = bool(campaign.scheduled_at or campaign.schedule)
        if has_schedule and campaign.status == CampaignStatus.DRAFT:
            campaign.schedule_runs()
        elif not has_schedule and campaign.status == CampaignStatus.SCHEDULED:
            campaign.unschedule()
        schedules.periodic_task_sync(campaign)
        campaign.save()
    return campaign


def campaign_execute(*, campaign: Campaign, actor: str, trigger: str = "execute") -> CampaignRun:
    """Starts a run now: the campaign becomes `running` and the fan-out begins after commit.
    Executed by hand, content that renders over a message's limits (the template may have
    changed since) raises ContentInvalid and nothing starts; a scheduled run finds out in its
    fan-out, which fails the run with the reason. Audited with `actor` (audit.SYSTEM for the
    runs beat starts)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            raise _refuse(campaign, "executed")
        if trigger == "execute":
            version = campaign_content_check(campaign=campaign)
        elif campaign.template_id:
            version = template_get(
                application=campaign.application, template_id=campaign.template_id
            )
        else:
            version = None
        campaign.start()
        campaign.save(update_fields=["status", "updated_at"])
        if not campaign.is_recurring:
            # A one-off campaign runs once, whether by hand or at its time.
            schedules.periodic_task_disable(campaign)
        number = (
            campaign.runs.order_by("-number").values_list("number", flat=True).first() or 0
        ) + 1
        run = CampaignRun.objects.create(
            campaign=campaign, number=number, trigger=trigger, template_version=version
        )
        _audit(
            campaign,
            actor,
            audit.CAMPAIGN_EXECUTED,
            {"run_id": str(run.pk), "run_number": number, "trigger": trigger},
        )
        transaction.on_commit(lambda: _enqueue_fanout(run.pk, step=0))
    return run


def _audit(campaign: Campaign, actor: str, action: str, details: dict | None = None) -> None:
    audit.audit_record(
        application_id=campaign.application_id,
        actor=actor,
        action=action,
        object_type="campaign",
        object_id=campaign.pk,
        details=details,
    )


def campaign_cancel(*, campaign: Campaign, actor: str) -> Campaign:
    """Cancels the campaign (draft, scheduled, running or paused): no further runs or
    batches, and its unsent messages become `cancelled` (in a task on the critical queue,
    moments later)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if not can_proceed(campaign.cancel):
            raise _refuse(campaign, "cancelled")
        campaign.cancel()
        campaign.save(update_fields=["status", "updated_at"])
        schedules.periodic_task_disable(campaign)
        runs = list(
            CampaignRun.objects.select_for_update()
            .filter(campaign=campaign, status__in=(RunStatus.RUNNING, RunStatus.PAUSED))
            .values_list("pk", flat=True)
        )
        CampaignRun.objects.filter(pk__in=runs).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now()
        )
        _audit(campaign, actor, audit.CAMPAIGN_CANCELLED, {"run_ids": [str(pk) for pk in runs]})
        for run_id in runs:
            transaction.on_commit(lambda run_id=run_id: _enqueue_cancel(run_id, actor))
    return campaign


def campaign_pause(*, campaign: Campaign, actor: str) -> Campaign:
    """Pauses a running campaign: its run starts no further fan-out batch (a batch being
    written when the pause commits is rolled back, see run_fanout_step) and is neither
    resumed by the stall watchdog nor completed; messages already queued are still
    delivered. Anything but `running` raises InvalidTransition."""
    with transaction.atomic():
        # The run rows first, then the campaign's: the order in which delivery's counters
        # and completion (run_stats_apply, _finish) lock them.
        runs = list(
            CampaignRun.objects.select_for_update()
            .filter(campaign_id=campaign.pk, status=RunStatus.RUNNING)
            .values_list("pk", flat=True)
        )
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if not can_proceed(campaign.pause):
            raise _refuse(campaign, "paused")
        campaign.pause()
        campaign.save(update_fields=["status", "updated_at"])
        CampaignRun.objects.filter(pk__in=runs).update(
            status=RunStatus.PAUSED, updated_at=timezone.now()
        )
        _audit(campaign, actor, audit.CAMPAIGN_PAUSED, {"run_ids": [str(pk) for pk in runs]})
    logger.info("Campaign %s paused by %s", campaign.pk, actor)
    return campaign


def campaign_resume(*, campaign: Campaign, actor: str) -> Campaign:
    """Resumes a paused campaign: its run's fan-out continues after the run's cursor (the
    subscriptions it reached keep their one message each), or, when the fan-out had
    finished, the run completes now if none of its messages is pending. Anything but
    `paused` raises InvalidTransition."""
    with transaction.atomic():
        runs = list(
            CampaignRun.objects.select_for_update().filter(
                campaign_id=campaign.pk, status=RunStatus.PAUSED
            )
        )
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if not can_proceed(campaign.resume):
            raise _refuse(campaign, "resumed")
        campaign.resume()
        campaign.save(update_fields=["status", "updated_at"])
        CampaignRun.objects.filter(pk__in=[run.pk for run in runs]).update(
            status=RunStatus.RUNNING, updated_at=timezone.now()
        )
        _audit(campaign, actor, audit.CAMPAIGN_RESUMED, {"run_ids": [str(run.pk) for run in runs]})
        for run in runs:
            if not run.fanout_done:
                transaction.on_commit(
                    lambda run=run: _enqueue_fanout(run.pk, step=run.batches_done)
                )
        finished = [run.pk for run in runs if run.fanout_done]
        if finished:
            _complete_if_done(finished)
            campaign.refresh_from_db(fields=["status", "updated_at"])
    logger.info("Campaign %s resumed by %s", campaign.pk, actor)
    return campaign


# How often the cancel of a run's messages looks again for those a worker was sending.
RUN_CANCEL_PASSES = 5
RUN_CANCEL_PASS_SECONDS = 10.0


def run_cancel_messages(*, run_id, actor: str, attempt: int = 0) -> int:
    """Cancels every pending message of a cancelled run. Those a worker is sending at that
    moment are left to it (messages_cancel skips locked rows); when some are still pending
    afterwards (a temporary failure put them back for a retry), this runs again a little
    later, up to RUN_CANCEL_PASSES times in all."""
    campaign_id = (
        CampaignRun.objects.filter(pk=run_id).values_list("campaign_id", flat=True).first()
    )
    # campaign_id leads the message index that finds a run's messages.
    pending = Message.objects.filter(
        campaign_id=campaign_id, campaign_run_id=run_id, status=MessageStatus.PENDING
    )
    cancelled = messages_cancel(message_ids=pending.values("pk"), actor=actor)
    if attempt + 1 < RUN_CANCEL_PASSES and pending.exists():
        _enqueue_cancel(run_id, actor, attempt=attempt + 1, countdown=RUN_CANCEL_PASS_SECONDS)
    return cancelled


def _enqueue_fanout(run_id, *, step: int, countdown: float | None = None) -> None:
    # Steps are small control tasks: on `critical` they never wait behind the delivery work
    # they create on `campaigns`.
    dispatch.publish(
        "campaigns.fanout", args=[str(run_id), step], queue="critical", countdown=countdown
    )


def _enqueue_cancel(run_id, actor: str, attempt: int = 0, countdown: float | None = None) -> None:
    dispatch.publish(
        "campaigns.cancel_run_messages",
        args=[str(run_id), actor, attempt],
        queue="critical",
        countdown=countdown,
    )


# --- Fan-out -----------------------------------------------------------------------------------


def _batch_plan(campaign: Campaign) -> tuple[int, float | None]:
    """How many subscriptions a fan-out step takes, and the pause before the next step."""
    size = settings.CAMPAIGN_BATCH_SIZE
    throttle = campaign.throttle_per_minute
    if not throttle:
        return size, None
    size = max(1, min(size, throttle))
    return size, 60.0 * size / throttle


def _category(campaign: Campaign, run: CampaignRun) -> str:
    """The category of the run's messages: the campaign's, else its template's."""
    if campaign.category or run.template_version_id is None:
        return campaign.category
    return run.template_version.template.category


def _content(campaign: Campaign, run: CampaignRun) -> Content | ContentFor:
    if run.template_version_id is None:
        return _literal(campaign)
    return rendered_content(run.template_version, campaign.variables)


class _Member(NamedTuple):
    """An audience member as fan-out needs it: what message_send reads of a subscription,
    without a model instance per row. The fields are Subscription's names; the step selects
    them in this order."""

    pk: Any
    type: str
    language: str


class _LocalMember(NamedTuple):
    """_Member with its time zone, for a campaign with local-time delivery (only those read
    the column)."""

    pk: Any
    type: str
    language: str
    timezone: str


# A target the fan-out reaches this long after its hour (the run started before it) is sent
# at once rather than a day later.
LOCAL_TIME_GRACE = timedelta(minutes=15)


def _local_send_after(campaign: Campaign, run: CampaignRun):
    """send_after_for of message_send for a campaign with local-time delivery (None
    without): the next delivery["local_time"] on each target's wall clock, computed once per
    time zone of the batch."""
    clock = local_time.local_time_of(campaign.delivery)
    if clock is None:
        return None
    fallback = (campaign.schedule or {}).get("timezone") or ""
    after = max(run.started_at, timezone.now() - LOCAL_TIME_GRACE)
    instants: dict[str, datetime] = {}

    def send_after_for(member: _LocalMember) -> datetime:
        name = member.timezone or fallback
        if name not in instants:
            instants[name] = local_time.next_local_time(clock, zone_of(name), after)
        return instants[name]

    return send_after_for


class _StepSuperseded(Exception):
    """The run was cancelled, or another step advanced it, while this step worked."""


def run_fanout_step(*, run_id, step: int | None = None) -> bool:
    """Turns the next batch of the run's audience into pending messages and delivery work.
    Returns whether more batches remain. `step` is the number of batches done when the step
    was enqueued: a duplicate step (the watchdog re-enqueued one that was only slow) finds it
    moved on and stops, so one run never grows two chains of steps.

    The batch's messages and the run's cursor commit together: the run advances with one
    compare-and-set UPDATE at the end (the row is locked only from there to the commit, so
    delivery keeps moving the run's counters meanwhile). A crash rolls both back; a step that
    finds the run cancelled or advanced by another rolls its batch back; and the unique
    constraint on run and subscription makes a second message for one subscription in one
    run impossible. A pause that commits while the step works fails that UPDATE (the run is
    no longer running), so the batch rolls back and is written after the resume."""
    run = (
        CampaignRun.objects.select_related("campaign__application", "template_version__template")
        .filter(pk=run_id)
        .first()
    )
    if run is None or run.status != RunStatus.RUNNING:
        # Cancelled, finished, or paused (the pause moves the run with its campaign): no
        # batch, and no next step; campaign_resume enqueues the step the run is at.
        return False
    structlog.contextvars.bind_contextvars(campaign_id=str(run.campaign_id))  # for its lines
    if step is not None and step == run.batches_done - 1:
        # This very step committed already: it runs again because its worker died after the
        # commit (Celery re-delivers a task whose worker was lost), perhaps before it handed
        # its batch over or enqueued the next step. Both are done again; copies of work that
        # did leave are harmless (the claim, the step check).
        _hand_over_last_step(run)
        return False
    if run.fanout_done or (step is not None and step != run.batches_done):
        return False
    campaign = run.campaign
    audience = targeting.audience(campaign.application, campaign.targeting_criteria)
    changes: dict[str, Any] = {"updated_at": timezone.now()}
    if run.batches_done == 0 and run.cursor is None:
        changes["audience_estimate"] = audience.count()
    if run.cursor is not None:
        audience = audience.filter(pk__gt=run.cursor)
    size, pause = _batch_plan(campaign)
    send_after_for = _local_send_after(campaign, run)
    member = _Member if send_after_for is None else _LocalMember
    rows = audience.order_by("pk").values_list(*member._fields)[:size]
    batch = [member._make(row) for row in rows]
    changes["fanout_done"] = len(batch) < size
    created = 0
    try:
        with transaction.atomic():
            if batch:
                outcome = message_send(
                    application=campaign.application,
                    subscriptions=batch,
                    content=_content(campaign, run),
                    delivery=Delivery(priority=campaign.priority, ttl=campaign.ttl),
                    campaign_id=campaign.pk,
                    campaign_run_id=run.pk,
                    queue="campaigns",
                    return_messages=False,
                    send_rules=rules.rules_for(
                        application=campaign.application, category=_category(campaign, run)
                    ),
                    send_after_for=send_after_for,
                )
                created = outcome.created
                changes |= {
                    "cursor": batch[-1].pk,
                    "batches_done": F("batches_done") + 1,
                    "targeted": F("targeted") + len(batch),
                    "pending": F("pending") + created,
                }
                if outcome.scheduled:
                    changes["scheduled"] = F("scheduled") + outcome.scheduled
                for reason, count in outcome.skipped_by_reason.items():
                    changes[SKIP_FIELDS[reason]] = F(SKIP_FIELDS[reason]) + count
            advanced = CampaignRun.objects.filter(
                pk=run.pk, status=RunStatus.RUNNING, batches_done=run.batches_done
            ).update(**changes)
            if not advanced:
                raise _StepSuperseded
            if changes["fanout_done"]:
                _complete_if_done([run.pk])
    except (_StepSuperseded, IntegrityError):
        return False
    except (QuotaExceeded, ContentInvalid, InputInvalid) as exc:
        # Out of quota, the content rendered for this batch breaks a message's limits, or
        # the campaign's category is gone: the run fails with the reason; retrying would
        # only fail again.
        with transaction.atomic():
            _finish(run, RunStatus.FAILED, error=exc.message)
        return False
    if changes["fanout_done"]:
        return False
    # Messages waiting for their hour are not delivery falling behind.
    if run.pending - run.scheduled + created > settings.CAMPAIGN_MAX_PENDING:
        # Delivery is behind: let it catch up rather than pile up work in the broker.
        pause = max(pause or 0.0, 0.5)
    _enqueue_fanout(run.pk, step=run.batches_done + 1, countdown=pause)
    return True


def _hand_over_last_step(run: CampaignRun) -> None:
    """Enqueues the pending messages of the run's last step again (created since the step
    began, which set the run's updated_at), and its next step."""
    pending = Message.objects.filter(
        campaign_id=run.campaign_id,
        campaign_run_id=run.pk,
        status=MessageStatus.PENDING,
        created_at__gte=run.updated_at,
    ).values_list("pk", flat=True)
    ids = [str(pk) for pk in pending]
    if ids:
        dispatch.enqueue("campaigns", ids)
    if not run.fanout_done:
        _size, pause = _batch_plan(run.campaign)
        _enqueue_fanout(run.pk, step=run.batches_done, countdown=pause)


def _complete_if_done(run_ids) -> None:
    """Completes the running runs among `run_ids` whose fan-out is done and whose messages
    are all terminal."""
    finished = CampaignRun.objects.filter(
        pk__in=list(run_ids), status=RunStatus.RUNNING, fanout_done=True, pending__lte=0
    )
    for run in finished.select_for_update():
        _finish(run, RunStatus.COMPLETED)


def _finish(run: CampaignRun, status: str, error: str = "") -> None:
    """Ends a run (the caller holds its lock) and moves its campaign on."""
    CampaignRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status, error=error, finished_at=timezone.now()
    )
    campaign = Campaign.objects.select_for_update().get(pk=run.campaign_id)
    if campaign.status != CampaignStatus.RUNNING:
        return
    if status == RunStatus.FAILED:
        campaign.fail()
    elif campaign.is_recurring:
        campaign.await_next_run()
    else:
        campaign.complete()
    campaign.save(update_fields=["status", "updated_at"])


def runs_resume_stalled(*, now: datetime | None = None) -> int:
    """Re-enqueues the fan-out of running runs that made no progress for a while (their next
    step was lost with a worker, or never reached the broker). Paused runs are not running:
    they wait for campaign_resume."""
    now = now or timezone.now()
    stalled_before = now - timedelta(seconds=settings.CAMPAIGN_STALL_SECONDS)
    count = 0
    for run in CampaignRun.objects.filter(
        status=RunStatus.RUNNING, fanout_done=False, updated_at__lt=stalled_before
    ).select_related("campaign"):
        _size, pause = _batch_plan(run.campaign)
        if pause and run.updated_at > now - timedelta(seconds=2 * pause):
            continue  # a throttled run is waiting on purpose
        _enqueue_fanout(run.pk, step=run.batches_done)
        count += 1
    return count


def runs_resume_after_broker_loss(*, now: datetime | None = None, **_signal) -> int:
    """The broker came back without its queued tasks: every running fan-out's next step was
    among them. Enqueues each again now (a throttled run after its pause), without waiting
    for CAMPAIGN_STALL_SECONDS; a step that was not lost makes the copy a no-op."""
    count = 0
    for run in CampaignRun.objects.filter(
        status=RunStatus.RUNNING, fanout_done=False
    ).select_related("campaign"):
        _size, pause = _batch_plan(run.campaign)
        _enqueue_fanout(run.pk, step=run.batches_done, countdown=pause)
        count += 1
    if count:
        logger.warning("Enqueued the fan-out of %d running campaign runs again", count)
    return count


# --- Statistics --------------------------------------------------------------------------------


def run_stats_apply(*, transitions: Counter, **_signal) -> None:
    """Moves run counters by (run_id, old, new) counts, in the transaction that changed the
    messages, and completes runs with nothing pending. Receives messaging's
    message_statuses_changed."""
    deltas: dict = defaultdict(Counter)
    for (run_id, old, new), count in transitions.items():
        deltas[run_id][old] -= count
        deltas[run_id][new] += count
    done = []
    table, quote = CampaignRun._meta.db_table, connection.ops.quote_name
    with connection.cursor() as cursor:
        for run_id, delta in deltas.items():
            changes = {name: value for name, value in delta.items() if value}
            if not changes:
                done.append(run_id)  # nothing moved: checked as _complete_if_done checks
                continue
            # One statement a batch: the counters move and, with the row locked, say whether
            # the run is over (a SELECT ... FOR UPDATE after the UPDATE cost as much again).
            assignments = ", ".join(
                f"{quote(CampaignRun._meta.get_field(name).column)} = "
                f"{quote(CampaignRun._meta.get_field(name).column)} + %s"
                for name in changes
            )
            cursor.execute(
                f"UPDATE {table} SET {assignments} WHERE id = %s"  # noqa: S608 (names are ours)
                " RETURNING status, fanout_done, pending",
                [*changes.values(), run_id],
            )
            row = cursor.fetchone()
            if row and row[0] == RunStatus.RUNNING and row[1] and row[2] <= 0:
                done.append(run_id)
    if done:
        _complete_if_done(done)


# --- Preview -----------------------------------------------------------------------------------


def campaign_preview(*, campaign: Campaign, sample_size: int = 3) -> dict:
    """Audience size, its split by channel, and the content a few of its members would get:
    title, body, data and all the channel parts, rendered, and `channel_content`, what the
    member's channel sends of them (messaging.channel_content)."""
    audience = targeting.audience(campaign.application, campaign.targeting_criteria)
    by_channel = dict(
        audience.order_by()
        .values_list("type")
        .annotate(count=Count("id"))
        .values_list("type", "count")
    )
    version = campaign_content_check(campaign=campaign)
    sample = []
    members = list(audience.order_by("pk").only("id", "type", "language")[:sample_size])
    stored = {
        channel: channel_credentials_get(application=campaign.application, channel=channel)
        for channel in {member.type for member in members}
    }
    for subscription in members:
        item = {
            "subscription_id": str(subscription.pk),
            "channel": subscription.type,
            "language": subscription.language,
        }
        if version is not None:
            result = render(version, campaign.variables, subscription.language or None)
            item |= {
                "title": result.title,
                "body": result.body,
                "data": result.data,
                "parts": result.parts,
                "missing_variables": result.missing_variables,
                "template_version": result.version,
            }
        else:
            item |= {
                "title": campaign.title,
                "body": campaign.body,
                "data": campaign.data,
                "parts": campaign.parts,
            }
        item["channel_content"] = channel_content(
            subscription.type,
            title=item["title"],
            body=item["body"],
            data=item["data"],
            parts=item["parts"],
            credentials=stored[subscription.type],
        )
        item["channel_content"] |= kakao_preview(
            application=campaign.application, channel=subscription.type, parts=item["parts"]
        )
        sample.append(item)
    return {
        "audience_size": sum(by_channel.values()),
        "by_channel": by_channel,
        "sample": sample,
    }
