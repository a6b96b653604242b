"""The operators' console: users, subscriptions and messages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction

from accounts.admin import actor_of_request
from core.admin_kit import (
    StorableJSONField,
    StorableTextForm,
    add_serializer_errors,
    confirmation,
)
from core.exceptions import InvalidTransition, QuotaExceeded, ValidationFailed

from .models import Message, MessageEvent, MessageStatus, Subscription, SubscriptionEvent, User
from .services.messages import message_retry, messages_cancel, messages_requeue
from .services.subscriptions import (
    subscription_changes_check,
    subscription_disable,
    subscription_update,
    subscriptions_disable,
)
from .services.users import user_identify, user_logout

# Why a subscription an operator turned off is off.
DISABLED_BY_OPERATOR = "disabled_by_operator"


class SubscriptionEventInline(admin.TabularInline):
    model = SubscriptionEvent
    extra = 0
    fields = ["created_at", "kind", "actor", "changes"]
    readonly_fields = fields
    can_delete = False
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


API_FIELDS = ("enabled", "tags", "language", "country", "timezone", "device")


class SubscriptionForm(StorableTextForm):
    """Checks its changes by the rules the services apply (the API's serializers apply the
    same ones, messaging.subscription_fields), so the console stores nothing the API would
    refuse; the admin saves through the services, which record the subscription's events."""

    class Meta:
        model = Subscription
        fields = ["user", *API_FIELDS]
        field_classes = {"tags": StorableJSONField, "device": StorableJSONField}

    def clean(self):
        cleaned = super().clean()
        self.service_changes: dict[str, Any] = {}
        changed = [n for n in API_FIELDS if n in self.changed_data and n not in self.errors]
        # The form edits the whole tag object; the API and the service merge, so tags the
        # operator deleted go in as removals (None).
        payload = {name: cleaned.get(name) for name in changed}
        if "tags" in payload and payload["tags"] is None:
            payload["tags"] = {}
        if "device" in payload and payload["device"] is None:
            payload["device"] = {}
        try:
            self.service_changes = subscription_changes_check(**payload)
        except ValidationFailed as exc:
            add_serializer_errors(self, exc.details)
            return cleaned
        if "tags" in self.service_changes:
            new = {k: v for k, v in self.service_changes["tags"].items() if v not in (None, "")}
            removed = {key: None for key in self.instance.tags if key not in new}
            self.service_changes["tags"] = {**removed, **new}
        user = cleaned.get("user")
        if user is not None and user.application_id != self.instance.application_id:
            self.add_error("user", "Choose a user of the subscription's application.")
        return cleaned


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
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
        "disabled_reason",
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

    def save_model(self, request, obj, form, change):
        # The services write the row and its events; `obj` holds the form's values unsaved.
        actor = actor_of_request(request)
        changes = dict(form.service_changes)
        enabled = changes.pop("enabled", None)
        if enabled is False:
            # As the disable action does: the reason says an operator did it.
            subscription_disable(subscription_id=obj.pk, reason=DISABLED_BY_OPERATOR, actor=actor)
        if changes or enabled:
            subscription_update(
                subscription=obj, actor=actor, enabled=enabled or None, touch=False, **changes
            )
        if "user" in form.changed_data:
            subscription = Subscription.objects.select_related("user", "application").get(pk=obj.pk)
            user = form.cleaned_data["user"]
            if user is None:
                user_logout(subscription=subscription, actor=actor)
            else:
                user_identify(
                    subscription=subscription, external_user_id=user.external_user_id, actor=actor
                )
        obj.refresh_from_db()

    @admin.action(description="Disable the selected subscriptions")
    def disable(self, request, queryset):
        page = confirmation(
            self,
            request,
            title="Disable subscriptions",
            consequences=[
                "Disable these subscriptions: no message or campaign is sent to them until "
                "they are enabled again or their device registers again.",
            ],
            objects=queryset,
            action="disable",
            button="Disable",
        )
        if page:
            return page
        with transaction.atomic():
            disabled = subscriptions_disable(
                subscription_ids=queryset.values_list("pk", flat=True),
                reason=DISABLED_BY_OPERATOR,
                actor=actor_of_request(request),
            )
        count = len(disabled)
        self.message_user(request, f"Disabled {count} subscription(s).")


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["external_user_id", "application", "created_at"]
    search_fields = ["external_user_id"]
    list_filter = ["application"]
    # Users come and go with their subscriptions through the API (identify, logout); the
    # console shows them. Renaming one here would cut it off from the app that knows it.
    fields = ["id", "application", "external_user_id", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


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
    actions = ["cancel_pending", "send_again", "retry_failed"]
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel the selected pending messages")
    def cancel_pending(self, request, queryset):
        page = confirmation(
            self,
            request,
            title="Cancel messages",
            consequences=[
                "Cancel those of these messages that are still pending: they are not sent.",
                "Messages already sent or failed are left as they are.",
            ],
            objects=queryset,
            action="cancel_pending",
            button="Cancel the messages",
        )
        if page:
            return page
        count = messages_cancel(
            message_ids=queryset.values_list("pk", flat=True),
            actor=actor_of_request(request),
        )
        # What messages_cancel skipped: rows a worker held while sending them.
        sending = queryset.filter(status=MessageStatus.PENDING).count()
        left = f" {sending} being sent at that moment were left to the workers." if sending else ""
        self.message_user(request, f"Cancelled {count} pending message(s).{left}")

    @admin.action(description="Send the selected pending messages now")
    def send_again(self, request, queryset):
        page = confirmation(
            self,
            request,
            title="Send messages now",
            consequences=[
                "Hand those of these messages that are pending and due to the workers again: "
                "they are sent to their devices now.",
                "Messages already sent, failed, cancelled or scheduled for later are left alone.",
            ],
            objects=queryset,
            action="send_again",
            button="Send now",
        )
        if page:
            return page
        count = messages_requeue(message_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Enqueued {count} pending message(s).")

    @admin.action(description="Retry the selected failed messages")
    def retry_failed(self, request, queryset):
        page = confirmation(
            self,
            request,
            title="Retry messages",
            consequences=[
                "Send each failed message among these again: a new pending message to the same "
                "subscription with the same content, counted against the application's quota.",
                "Messages not failed, to a disabled subscription, or retried already are skipped.",
            ],
            objects=queryset,
            action="retry_failed",
            button="Retry the messages",
        )
        if page:
            return page
        actor, retried, refused = actor_of_request(request), 0, 0
        for message in queryset.filter(status=MessageStatus.FAILED).select_related("application"):
            try:
                message_retry(message=message, actor=actor)
            except InvalidTransition:
                refused += 1
            except QuotaExceeded as exc:
                self.message_user(request, exc.message, messages.ERROR)
                break
            else:
                retried += 1
        not_failed = queryset.exclude(status=MessageStatus.FAILED).count()
        self.message_user(
            request,
            f"Retried {retried} failed message(s). Skipped {not_failed} not failed and "
            f"{refused} whose subscription is disabled or that were retried already.",
        )
