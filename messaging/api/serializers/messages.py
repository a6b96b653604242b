"""Input and output serializers of the message endpoints."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.categories import CategoryKeyField
from core.api import (
    AwareDateTimeField,
    ChannelPartsInput,
    FieldsReusedPerThread,
    JSONObjectField,
    StrictQuerySerializer,
    StrictSerializer,
    parts_of,
)
from core.channels import CHANNELS, PART_NAMES, PART_OF_CHANNEL
from core.openapi import NON_BLANK, RequestRules, WithChannelParts

from ...models import Message, MessageEvent, MessageStatus, SubscriptionType
from ...services.fallback import MAX_AFTER_SECONDS
from ...services.messages import (
    MAX_BODY_LENGTH,
    MAX_DATA_BYTES,
    MAX_TITLE_LENGTH,
    MAX_TTL,
    MAX_VARIABLES_BYTES,
    SEND_AFTER_MAX_AHEAD,
)

MAX_TARGETS = 10_000


class FallbackInput(StrictSerializer):
    """`fallback`: the user's subscription types to try in turn, and how long each hop may go
    unreceived before the next. Its errors name their full path (`fallback.order`)."""

    order = serializers.ListField(
        child=serializers.ChoiceField(choices=SubscriptionType.choices),
        min_length=2,
        max_length=len(CHANNELS),
        help_text="Subscription types, each once: the first the user has (enabled, and its "
        "channel ready) is sent to first.",
    )
    after_seconds = serializers.IntegerField(
        max_value=MAX_AFTER_SECONDS,
        help_text="How long a hop may stay unreceived before the next type gets a message "
        "(at least FALLBACK_MIN_AFTER_SECONDS, 10 by default).",
    )

    def validate_order(self, order: list[str]) -> list[str]:
        if len(set(order)) != len(order):
            raise serializers.ValidationError("Name each type once.")
        return order

    def validate_after_seconds(self, value: int) -> int:
        if value < settings.FALLBACK_MIN_AFTER_SECONDS:
            raise serializers.ValidationError(
                f"At least {settings.FALLBACK_MIN_AFTER_SECONDS} seconds."
            )
        return value

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(["Must be a JSON object."])
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"": exc.detail}
            raise serializers.ValidationError(
                {f"{self.field_name}.{name}".rstrip("."): errors for name, errors in detail.items()}
            ) from exc


class MessageCreateInput(FieldsReusedPerThread, StrictSerializer, ChannelPartsInput):
    """Exactly one target form; a template (with its variables and language) or content of
    one's own: title, body, data and the channel parts (`email`, `sms`, ...)."""

    subscription_id = serializers.UUIDField(required=False)
    subscription_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, min_length=1, max_length=MAX_TARGETS
    )
    external_user_id = serializers.CharField(max_length=255, required=False)
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=SubscriptionType.choices),
        required=False,
        min_length=1,
    )
    title = serializers.CharField(max_length=MAX_TITLE_LENGTH, required=False, allow_blank=True)
    body = serializers.CharField(max_length=MAX_BODY_LENGTH, required=False, allow_blank=True)
    data = JSONObjectField(max_bytes=MAX_DATA_BYTES, required=False)
    template_id = serializers.UUIDField(required=False)
    variables = JSONObjectField(max_bytes=MAX_VARIABLES_BYTES, required=False)
    language = serializers.CharField(max_length=16, required=False)
    priority = serializers.ChoiceField(choices=Message.Priority.choices, default="normal")
    ttl = serializers.IntegerField(required=False, min_value=0, max_value=MAX_TTL)
    collapse_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
    send_after = AwareDateTimeField(max_ahead=SEND_AFTER_MAX_AHEAD, required=False)
    category = CategoryKeyField(
        required=False,
        help_text="The key of one of the application's categories (else the template's): the "
        "recipients' preferences, quiet hours and the frequency cap apply (unless it is "
        "required). An unknown key is 400 validation_error on `category`.",
    )
    fallback = FallbackInput(
        required=False,
        help_text="Only with external_user_id: try the user's subscription types in turn, "
        "the next when a hop fails or is not received within after_seconds.",
    )

    def validate(self, attrs):
        forms = [
            f for f in ("subscription_id", "subscription_ids", "external_user_id") if f in attrs
        ]
        if len(forms) != 1:
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        "Give exactly one target: subscription_id, subscription_ids or "
                        f"external_user_id (got {', '.join(forms) or 'none'})."
                    ]
                }
            )
        literal = [f for f in ("title", "body", "data", *PART_NAMES) if f in attrs]
        if "template_id" in attrs:
            if literal:
                raise serializers.ValidationError(
                    {
                        name: [
                            "Give either template_id or content of your own (title, body, "
                            "data, channel parts), not both."
                        ]
                        for name in literal
                    }
                )
        elif "variables" in attrs or "language" in attrs:
            raise serializers.ValidationError(
                {
                    name: ["Only with template_id."]
                    for name in ("variables", "language")
                    if name in attrs
                }
            )
        elif not any(attrs.get(name) for name in ("title", "body", "data", *PART_NAMES)):
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        "A message needs a title, a body, data, a channel part or a template_id."
                    ]
                }
            )
        if "fallback" in attrs:
            _fallback_check(attrs)
        parts = parts_of(attrs)
        if "template_id" not in attrs:
            attrs["parts"] = {name: part for name, part in parts.items() if part}
        if "subscription_ids" in attrs:
            attrs["subscription_ids"] = list(dict.fromkeys(attrs["subscription_ids"]))
        return attrs


def _fallback_check(attrs: dict) -> None:
    if "external_user_id" not in attrs:
        raise serializers.ValidationError(
            {"fallback": ["Only with external_user_id: a chain tries one user's subscriptions."]}
        )
    if "channels" in attrs:
        raise serializers.ValidationError(
            {"channels": ["Not with fallback: fallback.order names the types to send to."]}
        )


def _present(*names: str) -> list[dict]:
    return [{"required": [name]} for name in names]


def _with_text(name: str, text: dict) -> dict:
    return {"required": [name], "properties": {name: text}}


class MessageCreateRules(RequestRules):
    """What validate() requires, in JSON Schema: exactly one target form; either a template
    (with its variables and language) or content of one's own (title, body, data, channel
    parts), not both."""

    target_class = MessageCreateInput
    body_required = True
    rules = {
        "allOf": [
            {"oneOf": _present("subscription_id", "subscription_ids", "external_user_id")},
            {
                "oneOf": [
                    {
                        "required": ["template_id"],
                        "not": {"anyOf": _present("title", "body", "data", *PART_NAMES)},
                    },
                    {
                        "not": {"anyOf": _present("template_id", "variables", "language")},
                        "anyOf": [
                            _with_text("title", {"pattern": NON_BLANK}),
                            _with_text("body", {"pattern": NON_BLANK}),
                            _with_text("data", {"minProperties": 1}),
                            *(_with_text(name, {"minProperties": 1}) for name in PART_NAMES),
                        ],
                    },
                ]
            },
            # fallback: only with external_user_id, and never with channels.
            {"anyOf": [{"not": {"required": ["fallback"]}}, {"required": ["external_user_id"]}]},
            {"not": {"required": ["fallback", "channels"]}},
        ]
    }


class MessageAcceptedOutput(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "subscription_id", "status"]


class MessageErrorOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    permanent = serializers.BooleanField(allow_null=True)


class MessageEventOutput(serializers.ModelSerializer):
    class Meta:
        model = MessageEvent
        fields = ["type", "status", "at", "details"]


class MessageOutput(serializers.ModelSerializer):
    """A message; its channel's part, if the channel has one, under the part's name
    (`"email": {...}` for an e-mail)."""

    error = serializers.SerializerMethodField()
    template_id = serializers.UUIDField(
        source="template_version.template_id", default=None, allow_null=True, read_only=True
    )
    template_version = serializers.IntegerField(
        source="template_version.version", default=None, allow_null=True, read_only=True
    )
    category = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "subscription_id",
            "channel",
            "status",
            "title",
            "body",
            "data",
            "campaign_id",
            "template_id",
            "template_version",
            "category",
            "priority",
            "ttl",
            "collapse_id",
            "send_after",
            "attempts",
            "error",
            "provider_id",
            "created_at",
            "sent_at",
            "retry_of",
        ]

    def to_representation(self, message: Message) -> dict:
        data = super().to_representation(message)
        part = PART_OF_CHANNEL.get(message.channel)
        if part is not None:
            data[part] = message.parts
        return data

    @extend_schema_field({"type": ["string", "null"]})
    def get_category(self, message: Message) -> str | None:
        """The key of the message's category (as it was when sent); null for none."""
        return message.category or None

    @extend_schema_field(MessageErrorOutput(allow_null=True))
    def get_error(self, message: Message) -> dict | None:
        if not message.error_code:
            return None
        return {
            "code": message.error_code,
            "message": message.error_message,
            "permanent": message.error_permanent,
        }


class MessageOutputParts(WithChannelParts):
    target_class = MessageOutput
    match_subclasses = True


class MessageDetailOutput(MessageOutput):
    """A message with its events and its neighbours in a fallback chain: `fallback_of` (the
    previous hop's message) and `fallback_next` (the next hop's first message, given in the
    context by the view)."""

    events = MessageEventOutput(many=True, read_only=True)
    fallback_next = serializers.SerializerMethodField()

    class Meta(MessageOutput.Meta):
        fields = [*MessageOutput.Meta.fields, "fallback_of", "fallback_next", "events"]

    @extend_schema_field(serializers.UUIDField(allow_null=True))
    def get_fallback_next(self, message: Message) -> str | None:
        found = self.context.get("fallback_next")
        return str(found) if found is not None else None


class MessageListFilters(StrictQuerySerializer):
    status = serializers.ChoiceField(choices=MessageStatus.choices, required=False)
    campaign_id = serializers.UUIDField(required=False)
    subscription_id = serializers.UUIDField(required=False)
    channel = serializers.ChoiceField(choices=SubscriptionType.choices, required=False)
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class MessageStatusInput(StrictSerializer):
    status = serializers.ChoiceField(
        choices=[MessageStatus.RECEIVED.value, MessageStatus.CONVERTED.value]
    )
