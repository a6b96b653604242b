"""Applications (tenants), their API keys and their sending quotas: what every other app's
data belongs to."""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.channels import channel_choices
from core.fields import EncryptedJSONField, EncryptedTextField

MAX_RETENTION_DAYS = 3650
CATEGORY_KEY_MAX_LENGTH = 64
CATEGORY_KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class Application(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    settings = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    # Identity verification (accounts.identity): when on, a client key acting for a user must
    # carry X-User-Hash = hex(HMAC-SHA256(identity_secret, external_user_id)).
    identity_verification = models.BooleanField(
        default=False, help_text="Client-key calls acting for a user must carry X-User-Hash."
    )
    identity_secret = EncryptedTextField(blank=True, default="", editable=False)
    # The secret before the last rotation, honoured for IDENTITY_SECRET_GRACE_SECONDS after.
    identity_secret_previous = EncryptedTextField(blank=True, default="", editable=False)
    identity_secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Messages and their events older than this are deleted by the daily purge
    # (messaging.retention).
    retention_days = models.PositiveIntegerField(
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text="Messages and their events are deleted this many days after they were made.",
    )
    # The web origins whose pages may call the API with this application's client key (CORS,
    # accounts.cors): "https://shop.example.com"; empty: no browser origin may.
    allowed_origins = models.JSONField(
        blank=True,
        default=list,
        help_text="Origins allowed to call the API with a client key, e.g. "
        '["https://shop.example.com"].',
    )
    # {"max": 3, "per_seconds": 86400}: a user gets at most `max` messages of non-required
    # categories, over all channels, in any window of `per_seconds` (messaging.rules); null:
    # no cap.
    frequency_cap = models.JSONField(
        null=True,
        blank=True,
        help_text='At most "max" messages of non-required categories per user in any window '
        'of "per_seconds", e.g. {"max": 3, "per_seconds": 86400}; empty: no cap.',
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    """What a message is about ("offers", "receipts"), named by messages, templates and
    campaigns by its `key`. Recipients turn categories on and off in their preferences
    (messaging.rules); a `required` one (security codes, receipts) passes every rule."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="categories"
    )
    key = models.CharField(
        max_length=CATEGORY_KEY_MAX_LENGTH,
        help_text="Lower-case letters, digits, '-' and '_', as messages name it.",
    )
    name = models.CharField(max_length=200)
    # {"ko": "혜택 및 소식"}: the name in other languages, for the preference page.
    translations = models.JSONField(blank=True, default=dict)
    required = models.BooleanField(
        default=False, help_text="Never held back by preferences, quiet hours or the cap."
    )
    default_enabled = models.BooleanField(
        default=True, help_text="Whether a user who never chose gets this category."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["application", "key"], name="category_key_unique")
        ]

    def __str__(self) -> str:
        return self.key

    def name_in(self, language: str | None) -> str:
        """The name in `language` ("ko", "pt-BR" falls back to "pt") when translated, else
        `name`."""
        if language:
            for candidate in (language, language.split("-")[0]):
                if name := self.translations.get(candidate):
                    return name
        return self.name


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        SERVER = "server", "server"
        CLIENT = "client", "client"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="api_keys")
    scope = models.CharField(max_length=10, choices=Scope.choices)
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, help_text="The visible start of the key.")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the whole key.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class MessageQuota(models.Model):
    """Per-application sending limits; counters move atomically with each accepted send."""

    application = models.OneToOneField(
        Application, on_delete=models.CASCADE, primary_key=True, related_name="quota"
    )
    daily_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    monthly_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    day = models.DateField(null=True, blank=True)
    day_used = models.PositiveIntegerField(default=0)
    month = models.DateField(null=True, blank=True, help_text="First day of the counted month.")
    month_used = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"quota of {self.application}"


class ChannelCredential(models.Model):
    """One application's credentials for one channel, stored encrypted: one row per
    (application, channel), whatever the channel's fields, for every channel that needs some
    (APNs and FCM included). Written through accounts.services.channel_credentials_set, which
    checks them first.

    iOSPush: {"auth": "token", "team_id", "key_id", "private_key", "topic", "sandbox"} or
    {"auth": "certificate", "certificate", "topic", "sandbox"}; AndroidPush:
    {"service_account": {...}}; the other channels' forms are in accounts.credentials."""

    id = models.BigAutoField(primary_key=True)
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="channel_credentials"
    )
    channel = models.CharField(max_length=20, choices=channel_choices)
    values = EncryptedJSONField()
    set_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "channel"], name="channel_credential_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} credentials of {self.application}"


class AuditEntry(models.Model):
    """One important action: who (an API key by its prefix, an admin user, or the system),
    what, on which object, when. Written in the transaction of the action it records
    (accounts.audit.audit_record). Append-only: the database refuses UPDATE and DELETE on the
    table (a trigger, migration 0007), and the rows outlive their application. Never holds
    secrets or a recipient's personal data: objects are named by their ids."""

    id = models.BigAutoField(primary_key=True)
    application = models.ForeignKey(
        Application,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(
        max_length=200, help_text='"api_key:<prefix>", "admin:<username>" or "system".'
    )
    api_key = models.ForeignKey(
        ApiKey,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        help_text="The key that acted, when a key did.",
    )
    action = models.CharField(max_length=50)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=100, blank=True)
    details = models.JSONField(blank=True, default=dict)

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["application", "-at", "-id"], name="audit_app_at"),
            models.Index(fields=["-at"], name="audit_at"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id} by {self.actor}"
