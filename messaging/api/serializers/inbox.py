"""The inbox endpoints' query strings and outputs."""

from __future__ import annotations

from rest_framework import serializers

from core.api import PageQuery, StrictQuerySerializer

from ...inbox.selectors import ALL, STATES
from ...inbox.shape import item_json


class InboxQuery(StrictQuerySerializer):
    subscription_id = serializers.UUIDField(help_text="The InAppMessage subscription's id.")


class InboxListQuery(PageQuery, InboxQuery):
    state = serializers.ChoiceField(
        choices=STATES,
        default=ALL,
        help_text="unread, read, archived, or all (every item not archived; the default).",
    )


class InboxItemOutput(serializers.Serializer):
    """An item, as its `message` stream event carries it too (messaging.inbox.shape)."""

    id = serializers.UUIDField(help_text="The message's id.")
    title = serializers.CharField()
    body = serializers.CharField()
    data = serializers.JSONField()
    in_app = serializers.JSONField(help_text="The message's in_app part ({} for none).")
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance):
        return item_json(instance)


class InboxCountOutput(serializers.Serializer):
    unread = serializers.IntegerField()
    total = serializers.IntegerField(help_text="Items not archived.")
