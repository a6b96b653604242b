"""Input and output serializers of a user's preferences. The input's fields pass JSON through:
messaging.services.preferences checks and merges it (for the admin and the preference page
too); their schemas say the same rules for the OpenAPI document."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import CATEGORY_KEY_MAX_LENGTH, CATEGORY_KEY_PATTERN
from core.api import JSONValueField, StrictSerializer
from core.channels import CHANNELS

from ...services.preferences import CLOCK_PATTERN, time_zones

_CHANGES = {"type": ["boolean", "null"]}


def _channels_schema(values: dict, description: str) -> dict:
    return {
        "type": "object",
        "description": description,
        "propertyNames": {"enum": list(CHANNELS)},
        "additionalProperties": values,
    }


# The parts' schemas say "object": their fields allow null, which drf-spectacular adds.
CHANNELS_INPUT = _channels_schema(
    _CHANGES, "Channel type -> true (on), false (off) or null (forget the choice)."
)
CATEGORIES_INPUT = {
    "type": "object",
    "description": "Category key -> what to change of its entry, or null to forget it. A key "
    "that sets something must be one of the application's categories.",
    "propertyNames": {"pattern": CATEGORY_KEY_PATTERN, "maxLength": CATEGORY_KEY_MAX_LENGTH},
    "additionalProperties": {
        "type": ["object", "null"],
        "properties": {
            "enabled": {
                **_CHANGES,
                "description": "Whether the category is wanted at all (else its default_enabled).",
            },
            "channels": {
                **CHANNELS_INPUT,
                "type": ["object", "null"],
                "description": "The category on each channel.",
            },
        },
        "additionalProperties": False,
    },
}
_CLOCK = {"type": "string", "pattern": CLOCK_PATTERN, "description": '"HH:MM", 24-hour clock.'}
QUIET_HOURS_INPUT = {
    "type": "object",
    "description": "Merged field by field into the stored ones, which must then have a start "
    "and an end that differ; null removes them. A start after the end spans midnight.",
    "properties": {
        "start": _CLOCK,
        "end": _CLOCK,
        "timezone": {
            "type": ["string", "null"],
            "enum": [*sorted(time_zones()), None],
            "description": "An IANA time zone; without one, the subscription's, else UTC.",
        },
    },
    "additionalProperties": False,
}


@extend_schema_field(CHANNELS_INPUT)
class ChannelsChanges(JSONValueField):
    pass


@extend_schema_field(CATEGORIES_INPUT)
class CategoriesChanges(JSONValueField):
    pass


@extend_schema_field(QUIET_HOURS_INPUT)
class QuietHoursChanges(JSONValueField):
    pass


class PreferencesInput(StrictSerializer):
    """Any part of the preferences; each part merges into the stored one, null removes what
    it names."""

    channels = ChannelsChanges(
        required=False, allow_null=True, help_text="Channels the user wants (true) or not."
    )
    categories = CategoriesChanges(required=False, allow_null=True)
    quiet_hours = QuietHoursChanges(required=False, allow_null=True)


_BOOLEANS = serializers.DictField(child=serializers.BooleanField())


class CategoryPreferenceOutput(serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    channels = serializers.DictField(child=serializers.BooleanField(), required=False)


class QuietHoursOutput(serializers.Serializer):
    start = serializers.CharField()
    end = serializers.CharField()
    timezone = serializers.CharField(
        required=False, help_text="Absent: the subscription's time zone, else UTC."
    )


class PreferencesOutput(serializers.Serializer):
    channels = serializers.DictField(
        child=serializers.BooleanField(), help_text="Channel type -> wanted; unset ones absent."
    )
    categories = serializers.DictField(
        child=CategoryPreferenceOutput(), help_text="Category key -> the user's choices."
    )
    quiet_hours = QuietHoursOutput(allow_null=True)


def preferences_json(preferences: dict) -> dict:
    """Stored preferences as the API shows them: every part present, null quiet hours when
    none."""
    return {
        "channels": preferences.get("channels", {}),
        "categories": preferences.get("categories", {}),
        "quiet_hours": preferences.get("quiet_hours") or None,
    }
