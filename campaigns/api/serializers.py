"""Input and output serializers of the campaign endpoints."""

from __future__ import annotations

import json

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from adapters.base import JSON_OBJECT, TEXT, TEXT_OR_NULL, object_schema
from core import channels
from core.api import (
    AwareDateTimeField,
    ChannelPartsField,
    ChannelPartsInput,
    JSONObjectField,
    JSONValueField,
    StrictQuerySerializer,
    StrictSerializer,
    TimeZoneField,
    parts_of,
)
from core.channels import PART_NAMES
from core.countries import country_code_pattern
from core.openapi import NON_BLANK, RequestRules, WithChannelParts
from core.validation import MAX_JSON_BYTES, InputInvalid
from messaging.models import Message, SubscriptionType
from messaging.services.messages import (
    MAX_BODY_LENGTH,
    MAX_DATA_BYTES,
    MAX_TITLE_LENGTH,
    MAX_TTL,
    MAX_VARIABLES_BYTES,
)

from ..local_time import delivery_clean
from ..models import Campaign, CampaignRun, CampaignStatus
from ..schedules import ScheduleInvalid, schedule_clean
from ..selectors import WAITING_COUNT_MAX, run_progress, run_waiting
from ..targeting import CriteriaInvalid, criteria_clean

_NON_EMPTY_STRINGS = {"type": "array", "minItems": 1, "items": {"type": "string"}}
_CRITERIA = {
    "type": "object",
    "description": "Who the campaign targets; every given criterion must hold.",
    "additionalProperties": False,
    "properties": {
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "user_tags": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Subscriptions whose user has every one of these tags.",
        },
        "last_active_after": {"type": "string", "format": "date-time"},
        "countries": {
            **_NON_EMPTY_STRINGS,
            "items": {"type": "string", "pattern": country_code_pattern()},
        },
        "languages": _NON_EMPTY_STRINGS,
        "channels": {
            **_NON_EMPTY_STRINGS,
            "items": {"type": "string", "enum": list(SubscriptionType.values)},
        },
    },
}
# The crontab fields as numbers or `*`, days of the month up to 28 (a day every month has);
# Celery's parser also takes 29-31 where the month has them, ranges, steps and names.
_CRONTAB = (
    r"^\s*(?:\*|[0-5]?[0-9])\s+(?:\*|[01]?[0-9]|2[0-3])\s+(?:\*|0?[1-9]|1[0-9]|2[0-8])"
    r"\s+(?:\*|0?[1-9]|1[0-2])\s+(?:\*|[0-6])\s*$"
)


@extend_schema_field(_CRITERIA)
class CriteriaField(JSONValueField):
    """Checked by campaigns.targeting.criteria_clean."""


# The OpenAPI schema of ScheduleField; campaigns.schedules.schedule_clean does the checking.
class ScheduleSchema(StrictSerializer):
    """A recurring schedule: a crontab in a time zone."""

    crontab = serializers.RegexField(
        _CRONTAB,
        help_text='Five fields: minute hour day-of-month month day-of-week, e.g. "0 9 * * 1".',
    )
    timezone = TimeZoneField(default="UTC")


@extend_schema_field(ScheduleSchema)
class ScheduleField(JSONValueField):
    """A recurring schedule, or null for none."""


_DELIVERY = {
    "type": "object",
    "description": "Local-time delivery: each target gets its message at the next local_time "
    "on its own wall clock (its subscription's timezone, else the schedule's, else UTC). {} "
    "or null: at once.",
    "additionalProperties": False,
    "properties": {
        "local_time": {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"},
    },
}


@extend_schema_field(_DELIVERY)
class DeliveryField(JSONValueField):
    """Checked by campaigns.local_time.delivery_clean."""


class CampaignInput(StrictSerializer, ChannelPartsInput):
    """POST takes every field (name required); PUT any of them. Content is a template with
    its variables, or title/body/data and the channel parts (`email`, `sms`, ...). The rules
    between fields (campaigns.services: a template or content of one's own, scheduled_at or
    schedule, some content) are the services' own."""

    name = serializers.CharField(max_length=200)
    template_id = serializers.UUIDField(required=False, allow_null=True)
    variables = JSONObjectField(max_bytes=MAX_VARIABLES_BYTES, required=False)
    title = serializers.CharField(max_length=MAX_TITLE_LENGTH, required=False, allow_blank=True)
    body = serializers.CharField(max_length=MAX_BODY_LENGTH, required=False, allow_blank=True)
    data = JSONObjectField(max_bytes=MAX_DATA_BYTES, required=False)
    targeting_criteria = CriteriaField(max_bytes=MAX_JSON_BYTES, required=False)
    # In the future, and at most services.SCHEDULED_AT_MAX_AHEAD ahead: the services check.
    scheduled_at = AwareDateTimeField(required=False, allow_null=True)
    schedule = ScheduleField(max_bytes=MAX_JSON_BYTES, required=False, allow_null=True)
    throttle_per_minute = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=10_000_000
    )
    priority = serializers.ChoiceField(choices=Message.Priority.choices, required=False)
    ttl = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_TTL)
    # A key of the application's categories (the services check it); "" or null for none.
    category = serializers.CharField(
        max_length=64, required=False, allow_blank=True, allow_null=True
    )
    delivery = DeliveryField(max_bytes=1024, required=False, allow_null=True)

    def validate_delivery(self, value):
        try:
            return delivery_clean(value)
        except InputInvalid as exc:
            raise serializers.ValidationError(exc.errors["delivery"]) from exc

    def validate_targeting_criteria(self, value):
        try:
            return criteria_clean(value)
        except CriteriaInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc

    def validate_schedule(self, value):
        try:
            return schedule_clean(value)
        except ScheduleInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc

    def validate(self, attrs):
        if parts := parts_of(attrs):
            attrs["parts"] = parts
        return attrs


class CampaignUpdate(CampaignInput):
    """PUT: any of the fields; the campaign keeps the others."""

    name = serializers.CharField(max_length=200, required=False)


def _given(name: str, value: dict) -> dict:
    return {"required": [name], "properties": {name: value}}


# A template and content of one's own (title, body or data with something in it) exclude
# each other; so do scheduled_at and schedule, when neither is null.
_TEMPLATE = _given("template_id", {"type": "string"})
_OWN_CONTENT = [
    _given("title", {"pattern": NON_BLANK}),
    _given("body", {"pattern": NON_BLANK}),
    _given("data", {"minProperties": 1}),
    *(_given(name, {"minProperties": 1}) for name in PART_NAMES),
]
_EXCLUSIONS = [
    {"not": {"allOf": [_TEMPLATE, {"anyOf": _OWN_CONTENT}]}},
    {
        "not": {
            "allOf": [
                _given("scheduled_at", {"type": "string"}),
                _given("schedule", {"type": "object"}),
            ]
        }
    },
]


class CampaignInputRules(RequestRules):
    """POST: a template or content of one's own, not both."""

    target_class = CampaignInput
    rules = {"anyOf": [_TEMPLATE, *_OWN_CONTENT], "allOf": _EXCLUSIONS}


class CampaignUpdateRules(RequestRules):
    """PUT: what the change leaves must still be a template or content of one's own, which
    depends on the stored campaign and cannot be said here."""

    target_class = CampaignUpdate
    rules = {"allOf": _EXCLUSIONS}


class SkippedByReasonOutput(serializers.Serializer):
    opted_out = serializers.IntegerField()
    frequency_cap = serializers.IntegerField()


class StatsOutput(serializers.Serializer):
    targeted = serializers.IntegerField()
    pending = serializers.IntegerField()
    successful = serializers.IntegerField()
    failed = serializers.IntegerField()
    received = serializers.IntegerField()
    converted = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    skipped = serializers.IntegerField(
        help_text="Audience members the recipients' rules left out (not messages)."
    )
    skipped_by_reason = SkippedByReasonOutput()


class RunOutput(serializers.ModelSerializer):
    stats = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    waiting = serializers.SerializerMethodField(
        help_text="Pending messages waiting for their time now (local-time delivery, quiet "
        f"hours), counted up to {WAITING_COUNT_MAX}."
    )
    template_version = serializers.IntegerField(
        source="template_version.version", default=None, allow_null=True, read_only=True
    )

    class Meta:
        model = CampaignRun
        fields = [
            "id",
            "number",
            "trigger",
            "status",
            "template_version",
            "batches_done",
            "audience_estimate",
            "fanout_done",
            "progress",
            "scheduled",
            "waiting",
            "error",
            "stats",
            "started_at",
            "finished_at",
        ]

    @extend_schema_field(StatsOutput)
    def get_stats(self, run: CampaignRun) -> dict:
        return run.stats() | run.skips()

    @extend_schema_field(serializers.FloatField())
    def get_progress(self, run: CampaignRun) -> float:
        return run_progress(run)

    @extend_schema_field(serializers.IntegerField())
    def get_waiting(self, run: CampaignRun) -> int:
        return run_waiting(run)


class CampaignOutput(serializers.ModelSerializer):
    """A campaign; its channel parts as top-level keys (only the ones it has)."""

    template_id = serializers.UUIDField(allow_null=True, read_only=True)
    targeting_criteria = CriteriaField(read_only=True)
    schedule = ScheduleField(allow_null=True, read_only=True)
    delivery = DeliveryField(read_only=True)
    stats = serializers.SerializerMethodField()
    latest_run = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "status",
            "template_id",
            "variables",
            "title",
            "body",
            "data",
            "targeting_criteria",
            "scheduled_at",
            "schedule",
            "throttle_per_minute",
            "priority",
            "ttl",
            "category",
            "delivery",
            "stats",
            "latest_run",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, campaign: Campaign) -> dict:
        return super().to_representation(campaign) | campaign.parts

    @extend_schema_field(StatsOutput)
    def get_stats(self, campaign: Campaign) -> dict:
        from ..selectors import campaign_stats

        return campaign_stats(campaign=campaign)

    @extend_schema_field(RunOutput(allow_null=True))
    def get_latest_run(self, campaign: Campaign) -> dict | None:
        from ..selectors import campaign_latest_run

        run = campaign_latest_run(campaign=campaign)
        return RunOutput(run).data if run else None


class CampaignListFilters(StrictQuerySerializer):
    status = serializers.ChoiceField(choices=CampaignStatus.choices, required=False)
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class CampaignOutputParts(WithChannelParts):
    target_class = CampaignOutput


# The in-app inbox is written locally (no adapter): its item, as messaging.channel_content
# writes it. Every other channel's form is its adapter's `content_schema`.
_LOCAL_CONTENT_SCHEMA = {
    channels.IN_APP: object_schema(
        "title, body, data and the in_app part's image_url and action_url.",
        {
            "title": TEXT, "body": TEXT, "data": JSON_OBJECT,
            "image_url": TEXT_OR_NULL, "action_url": TEXT_OR_NULL,
        },
    ),
}  # fmt: skip


def _content_schema_of(spec: channels.ChannelSpec) -> dict:
    if spec.adapter is None:
        return dict(_LOCAL_CONTENT_SCHEMA[spec.type])
    return dict(spec.adapter_class().content_schema)


def channel_content_schema() -> dict:
    """The schema of a preview's channel_content, one form per channel (channels whose
    content looks alike share one): its adapter's `content_schema`."""
    forms: dict[str, tuple[list[str], str, dict]] = {}
    for spec in channels.SPECS.values():
        schema = _content_schema_of(spec)
        description = schema.pop("description", "what it sends.")
        key = json.dumps(schema, sort_keys=True) + description
        forms.setdefault(key, ([], description, schema))[0].append(spec.type)
    return {
        "description": "What the member's channel sends of the content.",
        "oneOf": [
            {"description": f"{', '.join(types)}: {description}", **schema}
            for types, description, schema in forms.values()
        ],
    }


class ChannelContentField(serializers.JSONField):
    pass


class ChannelContentFieldSchema(OpenApiSerializerFieldExtension):
    target_class = ChannelContentField

    def map_serializer_field(self, auto_schema, direction):
        return channel_content_schema()


class PreviewSampleOutput(serializers.Serializer):
    """One audience member and what it would get."""

    subscription_id = serializers.UUIDField()
    channel = serializers.ChoiceField(choices=SubscriptionType.choices)
    language = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    data = JSONObjectField()
    parts = ChannelPartsField(help_text="Every channel part of the content, rendered.")
    channel_content = ChannelContentField()
    missing_variables = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Template campaigns only."
    )
    template_version = serializers.IntegerField(
        required=False, help_text="Template campaigns only."
    )


class PreviewOutput(serializers.Serializer):
    audience_size = serializers.IntegerField()
    by_channel = serializers.DictField(child=serializers.IntegerField())
    sample = PreviewSampleOutput(many=True)
