"""Input and output serializers of the subscription and user endpoints."""

from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from signal_project.api import StrictQuerySerializer, StrictSerializer

from ..models import Subscription, SubscriptionType, User
from ..tokens import normalize_token

MAX_TAGS = 100


class TagsField(serializers.DictField):
    """string -> string; with `allow_removal`, a value of null or "" removes the tag."""

    def __init__(self, *, allow_removal: bool = False, **kwargs):
        self.allow_removal = allow_removal
        super().__init__(
            child=serializers.CharField(
                max_length=255, allow_blank=allow_removal, allow_null=allow_removal
            ),
            **kwargs,
        )

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > MAX_TAGS:
            raise serializers.ValidationError(f"At most {MAX_TAGS} tags.")
        for key in value:
            if not key or len(key) > 64:
                raise serializers.ValidationError("A tag name is 1-64 characters.")
        return value


class DeviceSerializer(StrictSerializer):
    model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    os = serializers.CharField(max_length=100, required=False, allow_blank=True)
    app_version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    sdk_version = serializers.CharField(max_length=50, required=False, allow_blank=True)


class ProfileFieldsMixin(serializers.Serializer):
    language = serializers.CharField(max_length=16, required=False, allow_blank=True)
    country = serializers.CharField(max_length=2, required=False, allow_blank=True)
    timezone = serializers.CharField(max_length=64, required=False, allow_blank=True)
    device = DeviceSerializer(required=False)

    def validate_country(self, value: str) -> str:
        if value and not (len(value) == 2 and value.isalpha()):
            raise serializers.ValidationError("A country is an ISO 3166-1 alpha-2 code.")
        return value.upper()

    def validate_language(self, value: str) -> str:
        if value and not all(part.isalnum() for part in value.replace("_", "-").split("-")):
            raise serializers.ValidationError("A language is a BCP 47 tag such as 'ko' or 'en-US'.")
        return value

    def validate_timezone(self, value: str) -> str:
        if value:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise serializers.ValidationError(f"Unknown time zone {value!r}.") from exc
        return value


def _normalized(kind: str, token: str) -> str:
    try:
        return normalize_token(kind, token)
    except DjangoValidationError as exc:
        raise serializers.ValidationError({"token": exc.messages}) from exc


class SubscriptionCreateInput(ProfileFieldsMixin, StrictSerializer):
    type = serializers.ChoiceField(choices=SubscriptionType.choices)
    token = serializers.CharField(max_length=4096)
    external_user_id = serializers.CharField(max_length=255, required=False, allow_null=True)
    tags = TagsField(required=False)

    def validate(self, attrs):
        attrs["token"] = _normalized(attrs["type"], attrs["token"])
        return attrs


class SubscriptionUpdateInput(ProfileFieldsMixin, StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    token = serializers.CharField(max_length=4096, required=False)
    tags = TagsField(required=False, allow_removal=True)

    def validate(self, attrs):
        if "token" in attrs:
            attrs["token"] = _normalized(self.context["subscription"].type, attrs["token"])
        return attrs


class SubscriptionOutput(serializers.ModelSerializer):
    external_user_id = serializers.CharField(
        source="user.external_user_id", default=None, allow_null=True
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "type",
            "enabled",
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


class IdentifyInput(StrictSerializer):
    external_user_id = serializers.CharField(max_length=255)
    subscription_id = serializers.UUIDField()


class LogoutInput(StrictSerializer):
    subscription_id = serializers.UUIDField()


class UserOutput(serializers.ModelSerializer):
    subscription_ids = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "external_user_id", "created_at", "subscription_ids"]

    def get_subscription_ids(self, user: User) -> list[str]:
        return [str(pk) for pk in user.subscriptions.values_list("pk", flat=True)]


class SubscriptionListFilters(StrictQuerySerializer):
    type = serializers.ChoiceField(choices=SubscriptionType.choices, required=False)
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    country = serializers.CharField(max_length=2, required=False)
    language = serializers.CharField(max_length=16, required=False)
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)

    def validate_country(self, value: str) -> str:
        return value.upper()  # stored upper-case, as the input serializers normalize it

    def validate(self, attrs):
        if attrs.get("enabled") is None:
            attrs.pop("enabled", None)
        return attrs
