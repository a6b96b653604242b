"""The operators' console for applications (credentials uploaded as files, shown only as
fingerprints), their API keys and quotas."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import credentials
from accounts.models import ApiKey, Application, MessageQuota
from accounts.services import (
    api_key_create,
    api_key_revoke,
    application_create,
    application_set_credentials,
)
from core.admin_kit import StorableJSONField, StorableTextForm, confirmation


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["prefix", "scope", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False  # keys are made by the actions, which show the raw key once


class MessageQuotaInline(admin.StackedInline):
    model = MessageQuota
    can_delete = False
    fields = ["daily_limit", "monthly_limit", "day", "day_used", "month", "month_used"]
    readonly_fields = ["day", "day_used", "month", "month_used"]


def actor_of_request(request) -> str:
    return f"admin:{request.user.get_username()}"


MAX_CREDENTIALS_FILE = 64 * 1024  # a .p8 key is about 250 bytes, a service account 2-3 KB


def _uploaded_text(upload, what: str) -> str:
    if upload.size > MAX_CREDENTIALS_FILE:
        raise forms.ValidationError(f"The {what} is larger than {MAX_CREDENTIALS_FILE} bytes.")
    try:
        return upload.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise forms.ValidationError(f"The {what} is not UTF-8 text.") from exc


class ApplicationForm(StorableTextForm):
    """Credentials come in as files and are never put back into the page: the stored ones are
    shown by the admin as fingerprints (credentials_display). An empty upload keeps them."""

    apns_key_file = forms.FileField(
        required=False,
        label="APNs key file (.p8)",
        help_text="Upload to set or replace the key; leave empty to keep the stored one.",
    )
    apns_key_id = forms.CharField(required=False, max_length=20, label="APNs key id")
    apns_team_id = forms.CharField(required=False, max_length=20, label="APNs team id")
    apns_topic = forms.CharField(
        required=False, max_length=255, label="APNs topic", help_text="The app's bundle id."
    )
    apns_sandbox = forms.BooleanField(required=False, label="APNs sandbox")
    apns_clear = forms.BooleanField(required=False, label="Remove the APNs credentials")
    fcm_service_account_file = forms.FileField(
        required=False,
        label="FCM service-account JSON file",
        help_text="Upload to set or replace it; leave empty to keep the stored one.",
    )
    fcm_clear = forms.BooleanField(required=False, label="Remove the FCM credentials")

    APNS_DETAILS = ("apns_key_id", "apns_team_id", "apns_topic", "apns_sandbox")

    class Meta:
        model = Application
        fields = ["name", "settings"]
        field_classes = {"settings": StorableJSONField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = self.instance.apns_credentials if self.instance.pk else {}
        if stored.get("auth", "token") == "token":
            for name in self.APNS_DETAILS:
                self.initial.setdefault(name, stored.get(name.removeprefix("apns_")))
        # What the service is to store: None keeps a provider's credentials, {} removes them.
        self.apns_credentials: dict[str, Any] | None = None
        self.fcm_credentials: dict[str, Any] | None = None

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            self._clean_apns(cleaned)
            self._clean_fcm(cleaned)
        return cleaned

    def _clean_apns(self, cleaned) -> None:
        upload = cleaned.get("apns_key_file")
        stored = self.instance.apns_credentials if self.instance.pk else {}
        if cleaned.get("apns_clear"):
            if upload:
                self.add_error("apns_clear", "Upload a key or remove the credentials, not both.")
            else:
                self.apns_credentials = {}
            return
        details_changed = any(name in self.changed_data for name in self.APNS_DETAILS)
        if upload:
            try:
                private_key = _uploaded_text(upload, "APNs key file")
            except forms.ValidationError as exc:
                self.add_error("apns_key_file", exc)
                return
        elif details_changed and stored.get("auth", "token") == "token" and stored:
            private_key = stored["private_key"]  # new ids or topic for the key already stored
        elif details_changed and any(cleaned.get(name) for name in self.APNS_DETAILS):
            self.add_error("apns_key_file", "Upload the .p8 key file that goes with these.")
            return
        else:
            return
        try:
            self.apns_credentials = credentials.apns_credentials_clean(
                private_key=private_key,
                key_id=cleaned.get("apns_key_id") or "",
                team_id=cleaned.get("apns_team_id") or "",
                topic=cleaned.get("apns_topic") or "",
                sandbox=bool(cleaned.get("apns_sandbox")),
            )
        except credentials.CredentialsInvalid as exc:
            self.add_error("apns_key_file" if upload else None, str(exc))

    def _clean_fcm(self, cleaned) -> None:
        upload = cleaned.get("fcm_service_account_file")
        if cleaned.get("fcm_clear"):
            if upload:
                self.add_error("fcm_clear", "Upload a file or remove the credentials, not both.")
            else:
                self.fcm_credentials = {}
            return
        if not upload:
            return
        try:
            self.fcm_credentials = credentials.fcm_credentials_clean(
                service_account=_uploaded_text(upload, "service-account file")
            )
        except forms.ValidationError as exc:
            self.add_error("fcm_service_account_file", exc)
        except credentials.CredentialsInvalid as exc:
            self.add_error("fcm_service_account_file", str(exc))


def credentials_summary(values: dict, set_at, *, secret_keys) -> str:
    """Stored credentials as an HTML list with secrets fingerprinted, and when they were set."""
    if not values:
        return "None stored."
    when = f"{timezone.localtime(set_at):%Y-%m-%d %H:%M %Z}" if set_at else "before dates were kept"
    rows = [*credentials.credentials_display(values, secret_keys=secret_keys), ("set on", when)]
    return format_html(
        '<dl class="credentials">{}</dl>',
        format_html_join("", "<dt>{}</dt><dd><code>{}</code></dd>", rows),
    )


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    form = ApplicationForm
    list_display = ["name", "id", "created_at", "active_keys"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at", "apns_summary", "fcm_summary"]
    fieldsets = [
        (None, {"fields": ["id", "name", "settings", "created_at"]}),
        (
            "APNs (iOS push, token auth)",
            {
                "fields": [
                    "apns_summary",
                    "apns_key_file",
                    "apns_key_id",
                    "apns_team_id",
                    "apns_topic",
                    "apns_sandbox",
                    "apns_clear",
                ]
            },
        ),
        (
            "FCM (Android push)",
            {"fields": ["fcm_summary", "fcm_service_account_file", "fcm_clear"]},
        ),
    ]
    inlines = [MessageQuotaInline, ApiKeyInline]
    actions = ["create_server_key", "create_client_key"]

    @admin.display(description="active keys")
    def active_keys(self, obj: Application) -> int:
        return obj.api_keys.filter(revoked_at__isnull=True).count()

    @admin.display(description="stored APNs credentials")
    def apns_summary(self, obj: Application) -> str:
        return credentials_summary(
            obj.apns_credentials, obj.apns_credentials_set_at, secret_keys=credentials.APNS_SECRETS
        )

    @admin.display(description="stored FCM credentials")
    def fcm_summary(self, obj: Application) -> str:
        return credentials_summary(
            obj.fcm_credentials, obj.fcm_credentials_set_at, secret_keys=credentials.FCM_SECRETS
        )

    def save_model(self, request, obj, form, change):
        if not change:
            application = application_create(
                name=obj.name,
                settings=obj.settings,
                apns_credentials=form.apns_credentials,
                fcm_credentials=form.fcm_credentials,
            )
            obj.pk = application.pk
            obj.refresh_from_db()
            return
        # Only the fields of the form: the credentials are written by their service alone.
        obj.save(update_fields=["name", "settings"])
        application_set_credentials(
            application=obj,
            apns_credentials=form.apns_credentials,
            fcm_credentials=form.fcm_credentials,
        )

    def _create_key(self, request, queryset, scope: str):
        for application in queryset:
            new = api_key_create(application=application, scope=scope, name="admin")
            self.message_user(
                request,
                format_html(
                    "New {} key for {}: <code>{}</code> — copy it now, it is not shown again.",
                    scope,
                    application.name,
                    new.raw,
                ),
                messages.WARNING,
            )

    @admin.action(description="Create a server key (shown once)")
    def create_server_key(self, request, queryset):
        self._create_key(request, queryset, ApiKey.Scope.SERVER)

    @admin.action(description="Create a client key (shown once)")
    def create_client_key(self, request, queryset):
        self._create_key(request, queryset, ApiKey.Scope.CLIENT)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "application",
        "scope",
        "name",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "application__name"]
    readonly_fields = [
        "prefix",
        "application",
        "scope",
        "digest",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    fields = ["prefix", "application", "scope", "name", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # created from the application page, where the raw key is shown once

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        page = confirmation(
            self,
            request,
            title="Revoke API keys",
            consequences=[
                "Revoke these keys at once: every request made with them gets 401 from now on.",
                "A revoked key cannot be restored; the application needs a new key.",
            ],
            objects=queryset,
            action="revoke",
            button="Revoke",
        )
        if page:
            return page
        count = 0
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).")
