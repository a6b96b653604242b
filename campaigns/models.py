"""Campaigns: content, an audience, a schedule; each execution is a run with its own
statistics."""

from __future__ import annotations

import uuid

from django.db import models
from django_fsm import FSMField, transition


class CampaignStatus(models.TextChoices):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


# A campaign with a run under way: sending, or paused midway.
ACTIVE_STATUSES = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)


class Campaign(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(
        "accounts.Application", on_delete=models.CASCADE, related_name="campaigns"
    )
    name = models.CharField(max_length=200)
    status = FSMField(default=CampaignStatus.DRAFT, choices=CampaignStatus.choices)
    # Content: a template and its variables, or literal title/body/data and channel parts.
    template = models.ForeignKey(
        "templates_app.MessageTemplate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
    )
    variables = models.JSONField(blank=True, default=dict)
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)
    data = models.JSONField(blank=True, default=dict)
    # Per-channel parts of literal content, {"email": {...}, "sms": {...}} (core.channels);
    # each message stores its own channel's.
    parts = models.JSONField(blank=True, default=dict)
    priority = models.CharField(max_length=10, default="normal")
    ttl = models.PositiveIntegerField(null=True, blank=True)
    targeting_criteria = models.JSONField(blank=True, default=dict)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # {"crontab": "0 9 * * 1", "timezone": "Asia/Seoul"}
    schedule = models.JSONField(null=True, blank=True)
    throttle_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # accounts.Category.key, "" for none: the recipients' preferences and the frequency cap
    # apply to its messages (messaging.rules).
    category = models.CharField(max_length=64, blank=True)
    # {"local_time": "09:00"}: each target gets its message at the next 09:00 in its own
    # time zone; {} sends at once.
    delivery = models.JSONField(blank=True, default=dict)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["application", "-created_at"], name="campaign_app_created")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_recurring(self) -> bool:
        return bool(self.schedule)

    @transition(field=status, source=CampaignStatus.DRAFT, target=CampaignStatus.SCHEDULED)
    def schedule_runs(self) -> None:
        pass

    @transition(field=status, source=CampaignStatus.SCHEDULED, target=CampaignStatus.DRAFT)
    def unschedule(self) -> None:
        pass

    @transition(
        field=status,
        source=[CampaignStatus.DRAFT, CampaignStatus.SCHEDULED],
        target=CampaignStatus.RUNNING,
    )
    def start(self) -> None:
        pass

    @transition(field=status, source=CampaignStatus.RUNNING, target=CampaignStatus.COMPLETED)
    def complete(self) -> None:
        pass

    # A recurring campaign waits for its next run between runs.
    @transition(field=status, source=CampaignStatus.RUNNING, target=CampaignStatus.SCHEDULED)
    def await_next_run(self) -> None:
        pass

    @transition(field=status, source=CampaignStatus.RUNNING, target=CampaignStatus.FAILED)
    def fail(self) -> None:
        pass

    # Only a running campaign pauses: its run's fan-out stops between batches. A scheduled
    # one is held by cancelling it or by taking its schedule off (PUT), not by a pause.
    @transition(field=status, source=CampaignStatus.RUNNING, target=CampaignStatus.PAUSED)
    def pause(self) -> None:
        pass

    @transition(field=status, source=CampaignStatus.PAUSED, target=CampaignStatus.RUNNING)
    def resume(self) -> None:
        pass

    @transition(
        field=status,
        source=[
            CampaignStatus.DRAFT,
            CampaignStatus.SCHEDULED,
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
        ],
        target=CampaignStatus.CANCELLED,
    )
    def cancel(self) -> None:
        pass


class RunStatus(models.TextChoices):
    RUNNING = "running"
    # Its campaign is paused: no fan-out step runs, the stall watchdog leaves it alone, and it
    # does not complete until resumed; its messages already queued are still delivered and
    # move its counters.
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


STAT_FIELDS = ("targeted", "pending", "successful", "failed", "received", "converted", "cancelled")
# Why audience members got no message (messaging.rules.SKIP_REASONS), as the run counts them.
SKIP_FIELDS = {"opted_out": "skipped_opted_out", "frequency_cap": "skipped_frequency_cap"}


class CampaignRun(models.Model):
    """One execution of a campaign. Its counters move with its messages' statuses (in the
    transactions that change them), so reading them never counts messages."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=20)  # "execute", "scheduled_at", "crontab"
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.RUNNING)
    template_version = models.ForeignKey(
        "templates_app.TemplateVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # Fan-out progress: the audience is read in subscription-id order after `cursor`.
    cursor = models.UUIDField(null=True, blank=True)
    batches_done = models.PositiveIntegerField(default=0)
    fanout_done = models.BooleanField(default=False)
    audience_estimate = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    targeted = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    successful = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    received = models.BigIntegerField(default=0)
    converted = models.BigIntegerField(default=0)
    cancelled = models.BigIntegerField(default=0)
    # Audience members left out by the recipients' rules (SKIP_FIELDS): not messages.
    skipped_opted_out = models.BigIntegerField(default=0)
    skipped_frequency_cap = models.BigIntegerField(default=0)
    # Messages created to wait for a later time (local-time delivery, quiet hours).
    scheduled = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="campaign_run_number")
        ]

    def __str__(self) -> str:
        return f"{self.campaign} run {self.number}"

    def stats(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in STAT_FIELDS}

    def skips(self) -> dict:
        """{"skipped": N, "skipped_by_reason": {reason: n}}: the audience members the
        recipients' rules left out."""
        by_reason = {reason: getattr(self, name) for reason, name in SKIP_FIELDS.items()}
        return {"skipped": sum(by_reason.values()), "skipped_by_reason": by_reason}
