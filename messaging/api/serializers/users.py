"""Input and output serializers of the user endpoints."""

from __future__ import annotations

from rest_framework import serializers

from core.api import StrictSerializer

from ...models import User


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
