"""Input and output serializers of the user endpoints."""

from __future__ import annotations

from rest_framework import serializers

from core.api import StrictSerializer

from ...models import User
from .subscriptions import TagsField


class IdentifyInput(StrictSerializer):
    external_user_id = serializers.CharField(max_length=255)
    subscription_id = serializers.UUIDField()


class LogoutInput(StrictSerializer):
    subscription_id = serializers.UUIDField()


class UserTagsInput(StrictSerializer):
    tags = TagsField(
        allow_removal=True,
        help_text='Merged into the user\'s tags; a tag set to null or "" is removed.',
    )


class UserOutput(serializers.ModelSerializer):
    tags = TagsField(read_only=True)
    subscription_ids = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "external_user_id", "tags", "created_at", "subscription_ids"]

    def get_subscription_ids(self, user: User) -> list[str]:
        return [str(pk) for pk in user.subscriptions.values_list("pk", flat=True)]
