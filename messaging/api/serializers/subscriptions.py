"""Input and output serializers of the subscription endpoints."""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers
from rest_framework.fields import empty

from accounts.selectors import channels_ready_of
from adapters.webpush import keys_problem
from core.api import StrictQuerySerializer, StrictSerializer, TimeZoneField
from core.channels import SPECS, normalize_token, spec_of

from ...models import Subscription, SubscriptionType
from ...subscription_fields import (
    COUNTRY_PATTERN,
    DEVICE_FIELDS,
    LANGUAGE_PATTERN,
    MAX_LANGUAGE_LENGTH,
    MAX_TAG_NAME_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    MAX_TIMEZONE_LENGTH,
    FieldInvalid,
    country_clean,
    device_clean,
    language_clean,
    tags_clean,
    timezone_clean,
)


class RuleField:
    """A field that its rule in messaging.subscription_fields checks and normalizes (the
    subscription services call the same rule); its declaration is what the OpenAPI
    document shows. Mixed in before a DRF field class."""

    @staticmethod
    def rule(value: Any) -> Any:
        raise NotImplementedError

    def run_validation(self, data=empty):
        is_empty, data = self.validate_empty_values(data)
        if is_empty:
            return data
        try:
            return self.rule(data)
        except FieldInvalid as exc:
            raise serializers.ValidationError(exc.detail) from exc


class TagsField(RuleField, serializers.DictField):
    """string -> string; with `allow_removal`, a value of null or "" removes the tag."""

    def __init__(self, *, allow_removal: bool = False, **kwargs):
        self.allow_removal = allow_removal
        super().__init__(
            child=serializers.CharField(
                max_length=MAX_TAG_VALUE_LENGTH, allow_blank=allow_removal, allow_null=allow_removal
            ),
            **kwargs,
        )

    def rule(self, value: Any) -> dict:
        return tags_clean(value, allow_removal=self.allow_removal)


class TagsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = TagsField

    def map_serializer_field(self, auto_schema, direction):
        value = auto_schema._map_serializer_field(self.target.child, direction)
        if direction == "request":
            value["maxLength"] = self.target.child.max_length
        return {
            "type": "object",
            "additionalProperties": value,
            "propertyNames": {"minLength": 1, "maxLength": MAX_TAG_NAME_LENGTH},
            "maxProperties": MAX_TAGS,
        }


class DeviceSerializer(RuleField, StrictSerializer):
    rule = staticmethod(device_clean)

    model = serializers.CharField(
        max_length=DEVICE_FIELDS["model"], required=False, allow_blank=True
    )
    os = serializers.CharField(max_length=DEVICE_FIELDS["os"], required=False, allow_blank=True)
    app_version = serializers.CharField(
        max_length=DEVICE_FIELDS["app_version"], required=False, allow_blank=True
    )
    sdk_version = serializers.CharField(
        max_length=DEVICE_FIELDS["sdk_version"], required=False, allow_blank=True
    )


class LanguageField(RuleField, serializers.RegexField):
    rule = staticmethod(language_clean)


class CountryField(RuleField, serializers.RegexField):
    rule = staticmethod(country_clean)


class ProfileTimeZoneField(RuleField, TimeZoneField):
    rule = staticmethod(timezone_clean)


# "" passes (allow_blank). The patterns and limits are the rules' (subscription_fields).
class ProfileFieldsMixin(serializers.Serializer):
    language = LanguageField(
        LANGUAGE_PATTERN, max_length=MAX_LANGUAGE_LENGTH, required=False, allow_blank=True
    )
    country = CountryField(COUNTRY_PATTERN, required=False, allow_blank=True)
    timezone = ProfileTimeZoneField(
        max_length=MAX_TIMEZONE_LENGTH, required=False, allow_blank=True
    )
    device = DeviceSerializer(required=False)


def _normalized(kind: str, token: str) -> str:
    try:
        return normalize_token(kind, token)
    except DjangoValidationError as exc:
        raise serializers.ValidationError({"token": exc.messages}) from exc


class WebPushKeysInput(StrictSerializer):
    """A browser's PushSubscription keys, as `PushSubscription.toJSON()` gives them."""

    p256dh = serializers.CharField(max_length=200)
    auth = serializers.CharField(max_length=100)

    def validate(self, attrs):
        if problem := keys_problem(attrs):
            raise serializers.ValidationError(problem)
        return attrs


def _keys_checked(kind: str, attrs: dict, *, required: bool) -> None:
    """`keys` belong to the subscriptions of a channel whose token comes with the browser's
    keys (WebPush), and a new one needs them."""
    if not spec_of(kind).token_keys:
        if "keys" in attrs:
            raise serializers.ValidationError(
                {"keys": [f"Only {', '.join(_KEYED)} subscriptions have keys."]}
            )
    elif required and not attrs.get("keys"):
        raise serializers.ValidationError(
            {"keys": [f'A {kind} subscription needs the browser\'s keys {{"p256dh", "auth"}}.']}
        )


_KEYED = [spec.type for spec in SPECS.values() if spec.token_keys]
_KEYED_ONLY = f"{', '.join(_KEYED)} only"


class SubscriptionCreateInput(ProfileFieldsMixin, StrictSerializer):
    type = serializers.ChoiceField(choices=SubscriptionType.choices)
    token = serializers.CharField(max_length=4096)
    keys = WebPushKeysInput(required=False, help_text=f"{_KEYED_ONLY}: the browser's keys.")
    external_user_id = serializers.CharField(max_length=255, required=False, allow_null=True)
    tags = TagsField(required=False)

    def validate(self, attrs):
        attrs["token"] = _normalized(attrs["type"], attrs["token"])
        _keys_checked(attrs["type"], attrs, required=True)
        return attrs


# A browser's keys as PushSubscription.toJSON() gives them: base64url without padding of the
# 65-octet uncompressed P-256 point (it starts 0x04, so "B") and of the 16-octet auth secret.
# (The server also checks that the point is on the curve, which no schema can say.)
WEB_PUSH_KEYS_SCHEMA = {
    "type": "object",
    "properties": {
        "p256dh": {"type": "string", "pattern": "^B[A-Za-z0-9_-]{86}$"},
        "auth": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
    },
    "required": ["p256dh", "auth"],
    "additionalProperties": False,
}


class SubscriptionCreateInputSchema(OpenApiSerializerExtension):
    """One schema per subscription type (a discriminator on `type`): each type's token has
    its own form."""

    target_class = SubscriptionCreateInput

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction != "request":
            return schema
        mapping = {}
        for kind, spec in SPECS.items():
            variant = copy.deepcopy(schema)
            variant["properties"]["type"] = {"type": "string", "enum": [kind]}
            variant["properties"]["token"] = {
                **variant["properties"]["token"],
                **spec.token_rule.schema(),
                "description": spec.token_help,
            }
            if spec.token_keys:
                variant["properties"]["keys"] = WEB_PUSH_KEYS_SCHEMA
                variant["required"] = [*variant.get("required", []), "keys"]
            else:  # only WebPush subscriptions have keys
                variant["properties"].pop("keys", None)
            component = ResolvedComponent(
                name=f"SubscriptionCreate{kind}Request",
                type=ResolvedComponent.SCHEMA,
                object=f"{SubscriptionCreateInput.__qualname__}.{kind}",
                schema=variant,
            )
            auto_schema.registry.register_on_missing(component)
            mapping[kind] = component.ref["$ref"]
        return {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "type", "mapping": mapping},
        }


class SubscriptionUpdateInput(ProfileFieldsMixin, StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    token = serializers.CharField(max_length=4096, required=False)
    keys = WebPushKeysInput(required=False, help_text=f"{_KEYED_ONLY}: the browser's keys.")
    tags = TagsField(required=False, allow_removal=True)

    def validate(self, attrs):
        kind = self.context["subscription"].type
        if "token" in attrs:
            attrs["token"] = _normalized(kind, attrs["token"])
        # A new endpoint comes with new keys (the old ones belong to the old endpoint).
        _keys_checked(kind, attrs, required="token" in attrs)
        return attrs


class SubscriptionOutput(serializers.ModelSerializer):
    external_user_id = serializers.CharField(
        source="user.external_user_id", default=None, allow_null=True
    )
    channel_ready = serializers.SerializerMethodField(
        help_text="Whether the application can send on this subscription's channel (an "
        "adapter and the application's credentials for it); false: its messages fail "
        "`channel_unavailable`."
    )

    def get_channel_ready(self, obj: Subscription) -> bool:
        # Once per response, for every subscription of a list alike (one application).
        ready = self.context.get("channels_ready")
        if ready is None:
            ready = self.context["channels_ready"] = channels_ready_of(
                application_id=obj.application_id
            )
        return ready.get(obj.type, False)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "type",
            "enabled",
            "channel_ready",
            "disabled_reason",
            "external_user_id",
            "tags",
            "language",
            "country",
            "timezone",
            "device",
            "last_active_at",
            "created_at",
            "updated_at",
        ]


class SubscriptionDetailOutput(SubscriptionOutput):
    """The single-object form: the only one that carries the token."""

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "token"]


class SubscriptionListFilters(StrictQuerySerializer):
    type = serializers.ChoiceField(choices=SubscriptionType.choices, required=False)
    enabled = serializers.BooleanField(required=False)
    country = serializers.CharField(max_length=2, required=False)
    language = serializers.CharField(max_length=16, required=False)
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)

    def validate_country(self, value: str) -> str:
        return value.upper()  # stored upper-case, as the input serializers normalize it
