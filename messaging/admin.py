"""The operators' console: applications and their keys, users, subscriptions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from . import sending, services
from .models import (
    ApiKey,
    Application,
    Message,
    MessageEvent,
    MessageQuota,
    Subscription,
    SubscriptionEvent,
    User,
)


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


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "created_at", "active_keys"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at"]
    fields = ["id", "name", "apns_credentials", "fcm_credentials", "settings", "created_at"]
    inlines = [MessageQuotaInline, ApiKeyInline]
    actions = ["create_server_key", "create_client_key"]

    @admin.display(description="active keys")
    def active_keys(self, obj: Application) -> int:
        return obj.api_keys.filter(revoked_at__isnull=True).count()

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        MessageQuota.objects.get_or_create(application=obj)

    def _create_key(self, request, queryset, scope: str):
        for application in queryset:
            new = services.api_key_create(application=application, scope=scope, name="admin")
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
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


class SubscriptionEventInline(admin.TabularInline):
    model = SubscriptionEvent
    extra = 0
    fields = ["created_at", "kind", "actor", "changes"]
    readonly_fields = fields
    can_delete = False
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "type",
        "external_user_id",
        "enabled",
        "country",
        "language",
        "last_active_at",
        "application",
    ]
    list_filter = ["type", "enabled", "country", "application"]
    search_fields = ["user__external_user_id", "=id"]
    list_select_related = ["user", "application"]
    readonly_fields = [
        "id",
        "application",
        "type",
        "token_digest",
        "created_at",
        "updated_at",
        "last_active_at",
    ]
    fields = [
        "id",
        "application",
        "user",
        "type",
        "enabled",
        "disabled_reason",
        "tags",
        "language",
        "country",
        "timezone",
        "device",
        "last_active_at",
        "token_digest",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["user"]
    inlines = [SubscriptionEventInline]
    actions = ["disable"]

    @admin.display(description="external user id", ordering="user__external_user_id")
    def external_user_id(self, obj: Subscription) -> str:
        return obj.user.external_user_id if obj.user else "—"

    def has_add_permission(self, request):
        return False  # devices register themselves through the API

    @admin.action(description="Disable the selected subscriptions")
    def disable(self, request, queryset):
        actor = f"admin:{request.user.get_username()}"
        count = sum(
            services.subscription_disable(
                subscription_id=pk, reason="disabled_by_operator", actor=actor
            )
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"Disabled {count} subscription(s).")


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["external_user_id", "application", "created_at"]
    search_fields = ["external_user_id"]
    list_filter = ["application"]
    readonly_fields = ["id", "created_at"]


class MessageEventInline(admin.TabularInline):
    model = MessageEvent
    extra = 0
    fields = ["at", "type", "status", "details"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "channel", "status", "attempts", "error_code", "created_at", "sent_at"]
    list_filter = ["status", "channel", "priority", "error_code"]
    search_fields = ["=id", "=subscription__id", "=campaign_id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Message._meta.fields]
    inlines = [MessageEventInline]
    actions = ["cancel_pending", "send_again"]
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel the selected pending messages")
    def cancel_pending(self, request, queryset):
        count = sending.messages_cancel(
            message_ids=queryset.values_list("pk", flat=True),
            actor=f"admin:{request.user.get_username()}",
        )
        self.message_user(request, f"Cancelled {count} pending message(s).")

    @admin.action(description="Send the selected pending messages now")
    def send_again(self, request, queryset):
        count = sending.messages_requeue(message_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Enqueued {count} pending message(s).")
