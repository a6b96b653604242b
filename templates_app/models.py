"""Message templates and their immutable versions."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class MessageTemplate(models.Model):
    """A named template of one application; its content lives in versions, and `current`
    is the newest. Deleting only marks it, so records keep pointing at its versions."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(
        "accounts.Application", on_delete=models.CASCADE, related_name="templates"
    )
    name = models.CharField(max_length=200)
    current = models.ForeignKey(
        "TemplateVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
    )
    # accounts.Category.key, "" for none: the category of the messages sent with it, unless
    # the message or campaign names its own.
    category = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "name"],
                condition=Q(deleted_at__isnull=True),
                name="template_name_unique",
                violation_error_message="A template with this name already exists.",
            )
        ]
        indexes = [models.Index(fields=["application", "created_at"], name="template_app_created")]

    def __str__(self) -> str:
        return self.name


class TemplateVersion(models.Model):
    """One version of a template, never changed once written; messages and campaigns record
    the version they rendered."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(MessageTemplate, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    title_template = models.TextField(blank=True)
    body_template = models.TextField()
    data_template = models.JSONField(blank=True, default=dict)
    # Per-channel parts, each string a template: {"email": {"subject", "html", "from_name"},
    # "sms": {"text"}, ...} (core.channels.PART_FIELDS); only the parts given.
    parts = models.JSONField(blank=True, default=dict)
    # {"en": {"title_template", "body_template", "data_template"?, "email"?, ...}}; keys are
    # normalized tags; a translated part overrides the default language's field by field.
    translations = models.JSONField(blank=True, default=dict)
    default_language = models.CharField(max_length=35)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["template", "version"], name="template_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class KakaoTemplate(models.Model):
    """One AlimTalk template as the dealer's template list last showed it for an application
    (templates_app.kakao.kakao_templates_sync): Kakao approves templates at the dealer, so
    these rows are a read-only copy, replaced on every sync."""

    APPROVED = "TSC03"

    id = models.BigAutoField(primary_key=True)
    application = models.ForeignKey(
        "accounts.Application", on_delete=models.CASCADE, related_name="kakao_templates"
    )
    template_code = models.CharField(max_length=100)
    name = models.CharField(max_length=200, blank=True)
    # The approved text, with `#{variable}`s that a message's `kakao.variables` fill.
    text = models.TextField(blank=True)
    variables = models.JSONField(blank=True, default=list)  # the names of the #{...}s
    buttons = models.JSONField(blank=True, default=list)
    # The dealer's status code: TSC01 requested, TSC02 inspecting, TSC03 approved, TSC04
    # rejected.
    status = models.CharField(max_length=10)
    synced_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "template_code"], name="kakao_template_code_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template_code} ({self.status})"

    @property
    def approved(self) -> bool:
        return self.status == self.APPROVED
