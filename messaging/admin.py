"""The operators' console: users, subscriptions and messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Q
from django.http import StreamingHttpResponse
from django.utils.html import format_html, format_html_join

from accounts.admin import actor_of_request
from core.admin_kit import (
    EMPTY,
    AdminMedia,
    LargeTableAdmin,
    ReadOnlyAdmin,
    RecentTimeFilter,
    StorableJSONField,
    StorableTextForm,
    add_serializer_errors,
    changelist_url,
    confirmation,
    exact_value_filter,
    linked,
    short_id,
)
from core.exceptions import NotFound, ValidationFailed

from .admin_filters import ErrorCodeFilter
from .models import (
    FallbackChain,
    Message,
    MessageEvent,
    MessageStatus,
    Subscription,
    SubscriptionEvent,
    User,
)
from .selectors.users import users_data_counts
from .services.erasure import user_erase, user_export
from .services.messages import messages_cancel, messages_requeue, messages_retry
from .services.preferences import (
    preferences_changes,
    preferences_merge,
    user_preferences_update,
)
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
    Media = AdminMedia
    list_display = [
        "id_short",
        "type",
        "external_user_id",
        "enabled",
        "country",
        "language",
        "last_active_at",
        "application",
    ]
    list_display_links = ["id_short"]
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
        "messages_link",
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
        "messages_link",
    ]
    raw_id_fields = ["user"]
    inlines = [SubscriptionEventInline]
    actions = ["disable"]

    @admin.display(description="id", ordering="id")
    def id_short(self, obj: Subscription) -> str:
        return short_id(obj.pk)

    @admin.display(description="messages")
    def messages_link(self, obj: Subscription) -> str:
        return format_html(
            '<a href="{}" id="subscription-messages-link">the messages sent to it</a>',
            changelist_url("messaging", "message", subscription=obj.pk),
        )

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


class UserForm(StorableTextForm):
    """The user's preferences, edited as a whole and checked by the rules of the API
    (messaging.services.preferences): the admin saves the difference through the same
    service."""

    class Meta:
        model = User
        fields = ["preferences"]
        field_classes = {"preferences": StorableJSONField}
        help_texts = {
            "preferences": '{"channels": {"SMS": false}, "categories": {"offers": {"enabled": '
            'true, "channels": {"Email": false}}}, "quiet_hours": {"start": "22:00", "end": '
            '"08:00", "timezone": "Asia/Seoul"}}; each part optional. Category keys must be '
            "the application's."
        }

    def clean(self):
        cleaned = super().clean()
        self.preference_changes: dict[str, Any] = {}
        if "preferences" in self.errors:
            return cleaned
        current = self.instance.preferences
        wanted = cleaned.get("preferences")
        changes = preferences_changes(current=current, wanted={} if wanted is None else wanted)
        try:
            cleaned["preferences"] = preferences_merge(
                current=current, changes=changes, application=self.instance.application
            )
        except ValidationFailed as exc:
            self.add_error(
                "preferences",
                [
                    f"{path}: {message}" if path != "non_field_errors" else message
                    for path, messages in exc.details.items()
                    for message in messages
                ],
            )
            return cleaned
        self.preference_changes = changes
        return cleaned


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    form = UserForm
    list_display = ["external_user_id", "application", "tags_short", "created_at"]
    search_fields = ["external_user_id"]
    list_filter = ["application"]
    # Users come and go with their subscriptions through the API (identify, logout); the
    # console shows them, and edits their preferences. Renaming one here would cut it off
    # from the app that knows it.
    fields = ["id", "application", "external_user_id", "tags_display", "preferences", "created_at"]
    readonly_fields = ["id", "application", "external_user_id", "tags_display", "created_at"]
    actions = ["erase", "export"]

    @admin.display(description="tags")
    def tags_short(self, obj: User) -> str:
        return ", ".join(f"{k}={v}" for k, v in obj.tags.items()) or EMPTY

    @admin.display(description="tags")
    def tags_display(self, obj: User) -> str:
        if not obj.tags:
            return EMPTY
        return format_html(
            '<pre class="signal-json" id="user-tags">{}</pre>',
            json.dumps(obj.tags, indent=2, ensure_ascii=False),
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Django's delete would load every message of the user; "Erase" deletes in bulk.
        return False

    def save_model(self, request, obj, form, change):
        if form.preference_changes:
            user_preferences_update(
                application=obj.application,
                external_user_id=obj.external_user_id,
                changes=form.preference_changes,
                actor=actor_of_request(request),
            )
        obj.refresh_from_db()

    @admin.action(description="Erase the selected users")
    def erase(self, request, queryset):
        counts = users_data_counts(user_ids=queryset.values("pk"))
        page = confirmation(
            self,
            request,
            title="Erase users",
            consequences=[
                "Erase these users and everything stored about them, for good: "
                f"{counts['subscriptions']} subscription(s) with their "
                f"{counts['subscription_events']} event(s) and inbox counts, "
                f"{counts['messages']} message(s) with their {counts['message_events']} "
                f"event(s), and {counts['inbox_items']} inbox item(s).",
                "Messages queued for them are not sent. The audit log keeps that each user was "
                "erased, with these counts and nothing personal.",
            ],
            objects=queryset,
            action="erase",
            button="Erase",
        )
        if page:
            return page
        actor, erased = actor_of_request(request), 0
        for user in queryset:
            try:
                user_erase(user=user, actor=actor)
            except NotFound:
                continue  # erased meanwhile
            erased += 1
        self.message_user(request, f"Erased {erased} user(s).")

    @admin.action(description="Export the selected user (JSON)")
    def export(self, request, queryset):
        users = list(queryset[:2])
        if len(users) != 1:
            self.message_user(request, "Choose exactly one user to export.", messages.ERROR)
            return None
        [user] = users
        page = confirmation(
            self,
            request,
            title="Export a user",
            consequences=[
                "Download everything stored about this user as one JSON document: its tags, "
                "its subscriptions with their device tokens and addresses in clear, their "
                "events, messages and inbox items.",
                "The audit log records the export.",
            ],
            objects=users,
            action="export",
            button="Download",
        )
        if page:
            return page
        chunks = user_export(user=user, actor=actor_of_request(request))
        response = StreamingHttpResponse(
            (chunk.encode() for chunk in chunks), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="user-{user.pk}.json"'
        return response


class MessageEventInline(admin.TabularInline):
    model = MessageEvent
    extra = 0
    fields = ["at", "type", "status", "details"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(LargeTableAdmin, admin.ModelAdmin):
    Media = AdminMedia
    list_display = [
        "id_short",
        "application",
        "channel",
        "status",
        "attempts",
        "error_code",
        "title_short",
        "campaign_short",
        "created_at",
        "sent_at",
    ]
    list_display_links = ["id_short"]
    # None of these reads the messages table for its choices (the console links to them).
    list_filter = [
        "status",
        "channel",
        "priority",
        ErrorCodeFilter,
        ("created_at", RecentTimeFilter),
        exact_value_filter("campaign_id", "campaign"),
        "application",
    ]
    list_select_related = ["application"]
    # The search is get_search_results': ids, titles and campaigns by name.
    search_fields = ["title"]
    search_help_text = (
        "An id (of the message, its subscription, campaign or run), or text of the title or "
        "of the campaign's name."
    )
    fields = [
        "id",
        "application",
        "channel",
        "status",
        "retry_of",
        "fallback_of",
        "subscription_link",
        "campaign_link",
        "run_link",
        "template_version_link",
        "title",
        "body",
        "data",
        "parts",
        "priority",
        "ttl",
        "collapse_id",
        "send_after",
        "attempts",
        "error_code",
        "error_message",
        "error_permanent",
        "provider_id",
        "created_at",
        "enqueued_at",
        "sent_at",
    ]
    readonly_fields = fields
    inlines = [MessageEventInline]
    actions = ["cancel_pending", "send_again", "retry_failed"]
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page
    # Ids of the campaigns whose name contains a term: set by the campaigns' admin (messaging
    # does not import campaigns); None searches titles and ids only.
    campaign_search: ClassVar[Callable[[str], list] | None] = None

    def has_add_permission(self, request):
        return False

    def get_search_results(self, request, queryset, search_term):
        """A term that is a UUID finds the message, or the messages of that subscription,
        campaign or run (each through its index); other text finds titles containing it and
        the messages of campaigns whose name contains it."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            uid = uuid.UUID(term)
        except ValueError:
            uid = None
        if uid is not None:
            found = Q(pk=uid) | Q(subscription_id=uid) | Q(campaign_id=uid) | Q(campaign_run_id=uid)
        else:
            found = Q(title__icontains=term)
            campaigns = type(self).campaign_search(term) if type(self).campaign_search else []
            if campaigns:
                found |= Q(campaign_id__in=campaigns)
        return queryset.filter(found), False

    @admin.display(description="id", ordering="id")
    def id_short(self, obj: Message) -> str:
        return short_id(obj.pk)

    @admin.display(description="title")
    def title_short(self, obj: Message) -> str:
        return obj.title if len(obj.title) <= 60 else obj.title[:59] + "…"

    @admin.display(description="campaign")
    def campaign_short(self, obj: Message) -> str:
        return linked("campaigns", "campaign", obj.campaign_id)

    @admin.display(description="subscription")
    def subscription_link(self, obj: Message) -> str:
        return format_html(
            "{} {}", obj.channel, linked("messaging", "subscription", obj.subscription_id)
        )

    @admin.display(description="campaign")
    def campaign_link(self, obj: Message) -> str:
        if obj.campaign_id is None:
            return EMPTY
        return format_html(
            '{} · <a href="{}">its messages</a>',
            linked("campaigns", "campaign", obj.campaign_id),
            changelist_url("messaging", "message", campaign_id=obj.campaign_id),
        )

    @admin.display(description="campaign run")
    def run_link(self, obj: Message) -> str:
        if obj.campaign_run_id is None:
            return EMPTY
        return format_html(
            '{} · <a href="{}">its messages</a>',
            linked("campaigns", "campaignrun", obj.campaign_run_id),
            changelist_url("messaging", "message", campaign_run_id=obj.campaign_run_id),
        )

    @admin.display(description="template version")
    def template_version_link(self, obj: Message) -> str:
        if obj.template_version_id is None:
            return EMPTY
        return linked("templates_app", "templateversion", obj.template_version_id)

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
            by_hand=True,
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
        outcome = messages_retry(
            messages=queryset.filter(status=MessageStatus.FAILED).select_related("application"),
            actor=actor_of_request(request),
        )
        if outcome.quota_exceeded is not None:
            self.message_user(request, outcome.quota_exceeded.message, messages.ERROR)
        retried, refused = outcome.retried, outcome.refused
        not_failed = queryset.exclude(status=MessageStatus.FAILED).count()
        self.message_user(
            request,
            f"Retried {retried} failed message(s). Skipped {not_failed} not failed and "
            f"{refused} whose subscription is disabled or that were retried already.",
        )


@admin.register(MessageEvent)
class MessageEventAdmin(ReadOnlyAdmin, LargeTableAdmin, admin.ModelAdmin):
    """The event log of all messages, newest first: read-only, and over tens of millions of
    rows, so never counted (LargeTableAdmin) and ordered by the primary key."""

    list_display = ["id", "message_id", "type", "status", "at"]
    list_filter = ["type", ("at", RecentTimeFilter)]
    search_fields = ["=message__id"]
    ordering = ["-id"]
    fields = ["message", "type", "status", "at", "details"]
    readonly_fields = fields


@admin.register(FallbackChain)
class FallbackChainAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Fallback chains (messaging.services.fallback), newest first: read-only, as beat's tick
    moves them."""

    list_display = [
        "id_short",
        "application",
        "user_link",
        "status",
        "hop",
        "due_at",
        "deadline_at",
        "hop_messages",
        "created_at",
        "closed_at",
    ]
    list_display_links = ["id_short"]
    list_filter = ["status", ("created_at", RecentTimeFilter), "application"]
    list_select_related = ["application"]
    search_fields = ["=id", "=user__id"]
    ordering = ["-id"]
    fields = [
        "id",
        "application",
        "user_link",
        "status",
        "reason",
        "order",
        "position",
        "after_seconds",
        "hop_messages",
        "hops",
        "due_at",
        "deadline_at",
        "category",
        "title",
        "body",
        "template_version",
        "created_at",
        "updated_at",
        "closed_at",
    ]
    readonly_fields = fields

    @admin.display(description="id", ordering="id")
    def id_short(self, obj: FallbackChain) -> str:
        return short_id(obj.pk)

    @admin.display(description="user")
    def user_link(self, obj: FallbackChain) -> str:
        return linked("messaging", "user", obj.user_id)

    @admin.display(description="hop")
    def hop(self, obj: FallbackChain) -> str:
        """The order, the current (or last) hop's type in bold."""
        return format_html_join(
            " › ",
            "{}",
            (
                (format_html("<b>{}</b>", channel) if i == obj.position else channel,)
                for i, channel in enumerate(obj.order)
            ),
        )

    @admin.display(description="messages")
    def hop_messages(self, obj: FallbackChain) -> str:
        """The current (or last) hop's messages."""
        if not obj.message_ids:
            return EMPTY
        return format_html_join(
            " ", "{}", ((linked("messaging", "message", pk),) for pk in obj.message_ids)
        )
