"""The operators' console for applications (credentials uploaded as files, shown only as
fingerprints), their API keys and quotas, and the audit log (read-only). Every change made
here goes through the services with the admin user as the audit log's actor."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from accounts import credentials
from accounts.categories import (
    CHANGEABLE,
    KEY_TAKEN,
    category_create,
    category_delete,
    category_fields_clean,
    category_update,
)
from accounts.channel_test import RecipientInvalid, channel_test_send
from accounts.models import (
    ApiKey,
    Application,
    AuditEntry,
    Category,
    ChannelCredential,
    MessageQuota,
)
from accounts.selectors import channel_credentials_get, credential_secret_fields
from accounts.services import (
    APPLICATION_FIELDS,
    api_key_create,
    api_key_revoke,
    application_create,
    application_update,
    channel_credentials_clean,
    channel_credentials_remove,
    channel_credentials_store,
    frequency_cap_clean,
    identity_secret_rotate,
    origin_clean,
)
from core import channels
from core.admin_kit import (
    AdminMedia,
    ReadOnlyAdmin,
    RecentTimeFilter,
    StorableJSONField,
    StorableTextForm,
    add_serializer_errors,
    changelist_url,
    confirmation,
    linked,
    zoned,
)
from core.exceptions import ValidationFailed


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["prefix", "scope", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False  # keys are made by the actions, which show the raw key once


class ChannelCredentialInline(admin.TabularInline):
    """Which channels have credentials, and since when; each row links to its page, where they
    are uploaded and tested (never shown). APNs and FCM are also set in this page's own
    sections, from the .p8 key and the service-account file."""

    model = ChannelCredential
    extra = 0
    fields = ["channel", "set_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    verbose_name_plural = "channel credentials"

    def has_add_permission(self, request, obj=None):
        return False  # added on the channel credentials' own page, as a file


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


MAX_ORIGINS = 100  # as PUT /applications/current takes them
MAX_ORIGIN_LENGTH = 300


class OriginsField(forms.CharField):
    """A list of web origins written one per line; each is checked and normalized as the API
    does it (accounts.services.origin_clean), repeats dropped, the order kept."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value) or ""
        origins, problems = [], []
        for line in text.splitlines():
            if not line.strip():
                continue
            if len(line.strip()) > MAX_ORIGIN_LENGTH:
                problems.append(f"{line.strip()[:40]}…: longer than {MAX_ORIGIN_LENGTH}.")
                continue
            try:
                origins.append(origin_clean(line.strip()))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise forms.ValidationError(problems)
        origins = list(dict.fromkeys(origins))
        if len(origins) > MAX_ORIGINS:
            raise forms.ValidationError(f"At most {MAX_ORIGINS} origins.")
        return origins

    def has_changed(self, initial, data) -> bool:
        try:
            return (initial or []) != self.to_python(data)
        except forms.ValidationError:
            return True


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
    allowed_origins = OriginsField(
        required=False,
        help_text="One origin per line, e.g. https://shop.example.com: the web pages that may "
        "call the API with a client key (CORS). Empty: no browser origin may.",
    )

    APNS_DETAILS = ("apns_key_id", "apns_team_id", "apns_topic", "apns_sandbox")

    class Meta:
        model = Application
        fields = [
            "name",
            "settings",
            "identity_verification",
            "retention_days",
            "allowed_origins",
            "frequency_cap",
        ]
        field_classes = {"settings": StorableJSONField, "frequency_cap": StorableJSONField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_apns = _stored(self.instance, channels.IOS_PUSH)
        stored = self.stored_apns
        if stored.get("auth", "token") == "token":
            for name in self.APNS_DETAILS:
                self.initial.setdefault(name, stored.get(name.removeprefix("apns_")))
        # What the service is to store: None keeps a provider's credentials, {} removes them.
        self.apns_credentials: dict[str, Any] | None = None
        self.fcm_credentials: dict[str, Any] | None = None

    def clean_frequency_cap(self):
        # As PUT /applications/current checks it (accounts.services.frequency_cap_clean).
        try:
            return frequency_cap_clean(self.cleaned_data.get("frequency_cap"))
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.details["frequency_cap"]) from None

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            self._clean_apns(cleaned)
            self._clean_fcm(cleaned)
        return cleaned

    def _clean_apns(self, cleaned) -> None:
        upload = cleaned.get("apns_key_file")
        stored = self.stored_apns
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


def _stored(application: Application, channel: str) -> dict[str, Any]:
    """An application's stored credentials for a channel, {} when none (or not saved yet)."""
    if not application.pk:
        return {}
    return channel_credentials_get(application=application, channel=channel)


def credentials_summary(values: dict, set_at, *, secret_keys) -> str:
    """Stored credentials as an HTML list with secrets fingerprinted, and when they were set."""
    if not values:
        return "None stored."
    when = zoned(set_at, seconds=False) if set_at else "before dates were kept"
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
    readonly_fields = [
        "id",
        "created_at",
        "apns_summary",
        "fcm_summary",
        "identity_secret_summary",
        "categories_link",
    ]
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
        (
            "Identity verification (in-app inbox, identify)",
            {"fields": ["identity_verification", "identity_secret_summary"]},
        ),
        ("Data and browsers", {"fields": ["retention_days", "allowed_origins"]}),
        ("Delivery rules", {"fields": ["frequency_cap", "categories_link"]}),
    ]
    inlines = [MessageQuotaInline, ChannelCredentialInline, ApiKeyInline]
    actions = ["create_server_key", "create_client_key", "rotate_identity_secret"]

    @admin.display(description="active keys")
    def active_keys(self, obj: Application) -> int:
        return obj.api_keys.filter(revoked_at__isnull=True).count()

    def _summary(self, obj: Application, channel: str) -> str:
        row = (
            ChannelCredential.objects.filter(application=obj, channel=channel).first()
            if obj.pk
            else None
        )
        if row is None:
            return "None stored."
        return credentials_summary(
            row.values, row.set_at, secret_keys=credential_secret_fields(channel)
        )

    @admin.display(description="stored APNs credentials")
    def apns_summary(self, obj: Application) -> str:
        return self._summary(obj, channels.IOS_PUSH)

    @admin.display(description="stored FCM credentials")
    def fcm_summary(self, obj: Application) -> str:
        return self._summary(obj, channels.ANDROID_PUSH)

    @admin.display(description="categories")
    def categories_link(self, obj: Application) -> str:
        if not obj.pk:
            return "Added once the application is saved."
        count = obj.categories.count()
        return format_html(
            '<a href="{}">{} categor{}</a>',
            changelist_url("accounts", "category", application__id__exact=obj.pk),
            count,
            "y" if count == 1 else "ies",
        )

    @admin.display(description="identity secret")
    def identity_secret_summary(self, obj: Application) -> str:
        if not obj.pk or not obj.identity_secret:
            return "None yet: generated (and shown once) when verification is turned on."
        if obj.identity_secret_rotated_at:
            return f"Set; last rotated {zoned(obj.identity_secret_rotated_at, seconds=False)}."
        return 'Set. Rotate it with the action "Rotate the identity secret".'

    def _show_secret(self, request, application: Application, secret: str | None) -> None:
        if secret:
            self.message_user(
                request,
                format_html(
                    "Identity secret of {}: <code>{}</code> — copy it to your backend now, "
                    "it is not shown again.",
                    application.name,
                    secret,
                ),
                messages.WARNING,
            )

    def save_model(self, request, obj, form, change):
        # What the form's sections say to store: None keeps a channel's credentials, {}
        # removes them.
        given = {
            channels.IOS_PUSH: form.apns_credentials,
            channels.ANDROID_PUSH: form.fcm_credentials,
        }
        actor = actor_of_request(request)
        if not change:
            application = application_create(
                name=obj.name,
                settings=obj.settings,
                retention_days=obj.retention_days,
                allowed_origins=obj.allowed_origins,
                frequency_cap=obj.frequency_cap,
                credentials={channel: values for channel, values in given.items() if values},
                actor=actor,
            )
            obj.pk = application.pk
            if form.cleaned_data.get("identity_verification"):
                _, secret = application_update(
                    application=application, actor=actor, identity_verification=True
                )
                self._show_secret(request, application, secret)
            obj.refresh_from_db()
            return
        # Only the fields of the form, through the service that records which changed; the
        # credentials are written by their own service (and audited there).
        changed = {
            name: form.cleaned_data[name]
            for name in APPLICATION_FIELDS
            if name in form.changed_data
        }
        if changed:
            _, secret = application_update(application=obj, actor=actor, **changed)
            self._show_secret(request, obj, secret)
        for channel, values in given.items():
            if values is not None:
                channel_credentials_store(
                    application=obj, channel=channel, values=values, actor=actor
                )

    def _create_key(self, request, queryset, scope: str):
        for application in queryset:
            new = api_key_create(
                application=application,
                scope=scope,
                name="admin",
                actor=actor_of_request(request),
            )
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

    @admin.action(description="Rotate the identity secret (shown once)")
    def rotate_identity_secret(self, request, queryset):
        grace = django_settings.IDENTITY_SECRET_GRACE_SECONDS
        page = confirmation(
            self,
            request,
            title="Rotate identity secrets",
            consequences=[
                "Generate a new identity secret for each application, shown once on the next page.",
                f"Keep accepting hashes made with the old secret for {grace} seconds "
                "(IDENTITY_SECRET_GRACE_SECONDS); after that only the new one is valid.",
            ],
            objects=queryset,
            action="rotate_identity_secret",
            button="Rotate",
        )
        if page:
            return page
        actor = actor_of_request(request)
        for application in queryset:
            secret = identity_secret_rotate(application=application, actor=actor)
            self._show_secret(request, application, secret)
        return None


class CategoryForm(StorableTextForm):
    """Checks a category by the rules of the API (accounts.categories.category_fields_clean);
    the admin saves it through the same services, audited. The key and the application are
    fixed once it exists."""

    class Meta:
        model = Category
        fields = ["application", "key", "name", "required", "default_enabled", "translations"]
        field_classes = {"translations": StorableJSONField}
        help_texts = {
            "translations": '{"ko": "혜택 및 소식", "pt-BR": "Ofertas"}: the name in other '
            "languages, for the preference page."
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.fields["application"].disabled = True
            self.fields["key"].disabled = True

    def clean(self):
        cleaned = super().clean()
        adding = self.instance._state.adding
        names = ["key", *CHANGEABLE] if adding else list(CHANGEABLE)
        given = {name: cleaned.get(name) for name in names if name not in self.errors}
        if "translations" in given and given["translations"] is None:
            given["translations"] = {}
        try:
            cleaned.update(category_fields_clean(**given))
        except ValidationFailed as exc:
            add_serializer_errors(self, exc.details)
            return cleaned
        application, key = cleaned.get("application"), cleaned.get("key")
        if (
            adding
            and application is not None
            and Category.objects.filter(application=application, key=key).exists()
        ):
            # In the API's words (Django's own check then skips the field).
            self.add_error("key", KEY_TAKEN)
        return cleaned


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    """Each application's categories: what messages, templates and campaigns name, and what
    recipients turn on and off. Added, changed and deleted through the services (audited)."""

    form = CategoryForm
    list_display = ["key", "name", "application", "required", "default_enabled", "updated_at"]
    list_filter = ["application", "required"]
    search_fields = ["key", "name"]
    list_select_related = ["application"]
    ordering = ["application__name", "key"]
    readonly_fields = ["created_at", "updated_at"]
    fields = [
        "application",
        "key",
        "name",
        "required",
        "default_enabled",
        "translations",
        "created_at",
        "updated_at",
    ]

    def save_model(self, request, obj, form, change):
        actor = actor_of_request(request)
        if change:
            changes = {name: form.cleaned_data[name] for name in CHANGEABLE}
            category_update(category=obj, actor=actor, **changes)
        else:
            created = category_create(
                application=form.cleaned_data["application"],
                key=form.cleaned_data["key"],
                actor=actor,
                **{name: form.cleaned_data[name] for name in CHANGEABLE},
            )
            obj.pk = created.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj: Category) -> None:
        category_delete(category=obj, actor=actor_of_request(request))

    def delete_queryset(self, request, queryset) -> None:
        for category in queryset:
            self.delete_model(request, category)


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
        actor, count = actor_of_request(request), 0
        for api_key in queryset:
            if api_key.revoked_at is None:
                api_key_revoke(api_key=api_key, actor=actor)
                count += 1
        self.message_user(request, f"Revoked {count} key(s).")


# What a test message goes to: a subscription's token (core.channels.SPECS' token_help).
_RECIPIENT_HELP = {
    spec.type: 'the browser\'s subscription JSON {"endpoint", "keys"}'
    if spec.token_keys
    else spec.token_help.rstrip(".")
    for spec in channels.SPECS.values()
    if spec.credentials
}


class ChannelCredentialForm(forms.ModelForm):
    """A channel's credentials come in as a JSON file (the same file `set_channel_credentials`
    takes) and are never put back into the page; `test_recipient` sends a test message with
    what is stored once it is saved."""

    credentials_file = forms.FileField(
        required=False,
        label="Credentials JSON file",
        help_text="Upload to set or replace them; leave empty to keep the stored ones. The "
        "channel's fields as a JSON object, the file set_channel_credentials takes (see "
        "docs/channels.md, Credentials); WebPush: a file holding {} generates VAPID keys.",
    )
    test_recipient = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Sends a test message to this recipient after saving: "
        + "; ".join(f"{channel}: {what}" for channel, what in _RECIPIENT_HELP.items())
        + ".",
    )

    class Meta:
        model = ChannelCredential
        fields = ["application", "channel"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.values: dict[str, Any] | None = None  # what to store; None keeps the stored
        if self.instance.pk:  # the row is (application, channel): replace, not move
            self.fields["application"].disabled = True
            self.fields["channel"].disabled = True

    def clean(self):
        cleaned = super().clean()
        channel = cleaned.get("channel") or self.instance.channel
        upload = cleaned.get("credentials_file")
        if not upload:
            if not self.instance.pk:
                self.add_error("credentials_file", "Upload the channel's credentials file.")
            return cleaned
        try:
            values = json.loads(_uploaded_text(upload, "credentials file"))
        except forms.ValidationError as exc:
            self.add_error("credentials_file", exc)
            return cleaned
        except json.JSONDecodeError as exc:
            self.add_error("credentials_file", f"The file is not JSON: {exc}")
            return cleaned
        try:
            self.values = channel_credentials_clean(channel=channel, values=values)
        except credentials.CredentialsInvalid as exc:
            self.add_error("credentials_file", str(exc))
            return cleaned
        if not self.values:
            self.values = None
            self.add_error(
                "credentials_file",
                "The file holds no credentials; to remove them, delete this row.",
            )
        return cleaned


@admin.register(ChannelCredential)
class ChannelCredentialAdmin(admin.ModelAdmin):
    form = ChannelCredentialForm
    list_display = ["application", "channel", "set_at"]
    list_filter = ["channel"]
    search_fields = ["application__name", "application__id"]
    readonly_fields = ["summary", "set_at"]
    fields = ["application", "channel", "summary", "credentials_file", "test_recipient"]

    @admin.display(description="stored credentials")
    def summary(self, obj: ChannelCredential) -> str:
        if not obj.pk:
            return "None stored."
        return credentials_summary(
            obj.values, obj.set_at, secret_keys=credential_secret_fields(obj.channel)
        )

    def save_model(self, request, obj, form, change):
        if form.values is not None:  # checked by the form (channel_credentials_clean)
            channel_credentials_store(
                application=form.cleaned_data.get("application") or obj.application,
                channel=form.cleaned_data.get("channel") or obj.channel,
                values=form.values,
                actor=actor_of_request(request),
            )
            stored = ChannelCredential.objects.get(application=obj.application, channel=obj.channel)
            obj.pk, obj.values, obj.set_at = stored.pk, stored.values, stored.set_at
        recipient = form.cleaned_data.get("test_recipient") or ""
        if recipient.strip():
            self._send_test(request, obj, recipient)

    def delete_model(self, request, obj: ChannelCredential) -> None:
        channel_credentials_remove(
            application=obj.application, channel=obj.channel, actor=actor_of_request(request)
        )

    def delete_queryset(self, request, queryset) -> None:
        for row in queryset.select_related("application"):
            self.delete_model(request, row)

    def _send_test(self, request, obj: ChannelCredential, recipient: str) -> None:
        try:
            result = channel_test_send(channel=obj.channel, values=obj.values, recipient=recipient)
        except RecipientInvalid as exc:
            self.message_user(request, f"Test not sent: {exc}", messages.ERROR)
            return
        if result.ok:
            self.message_user(
                request,
                f"Test {obj.channel} message accepted by the provider"
                + (f" (id {result.provider_id})." if result.provider_id else "."),
            )
        else:
            self.message_user(
                request,
                f"Test {obj.channel} message refused: {result.error_code}: {result.error_message}",
                messages.ERROR,
            )


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """The audit log of every application, newest first: nobody adds, edits or deletes a row
    (the database refuses it as well)."""

    Media = AdminMedia
    list_display = ["at_zoned", "application_link", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", ("at", RecentTimeFilter), "application"]
    search_fields = ["=object_id"]
    ordering = ["-at", "-id"]
    list_select_related = ["application"]
    fields = ["at_zoned", "application_link", "actor", "action", "object_type", "object_id",
              "details"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="at", ordering="at")
    def at_zoned(self, obj: AuditEntry) -> str:
        return zoned(obj.at)

    @admin.display(description="application")
    def application_link(self, obj: AuditEntry) -> str:
        if obj.application_id is None:
            return "—"
        try:
            name = obj.application.name if obj.application else str(obj.application_id)
        except Application.DoesNotExist:  # the rows outlive their application
            return str(obj.application_id)
        return linked("accounts", "application", obj.application_id, name)
