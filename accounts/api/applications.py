"""`GET /applications/current`: the calling key's application, as a browser or an app needs
it to subscribe (which channels can send, the Web Push public key)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.channels import CHANNELS, WEB_PUSH

from ..selectors import channel_credentials_get, channels_ready
from .auth import IsServerOrClientKey


class ApplicationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    channels = serializers.DictField(
        child=serializers.BooleanField(),
        help_text=f"Channel -> whether it can send ({', '.join(CHANNELS)}).",
    )
    web_push_public_key = serializers.CharField(
        allow_null=True,
        help_text="The VAPID public key (base64url): the applicationServerKey a browser "
        "subscribes with; null when Web Push has no credentials.",
    )


class ApplicationCurrentApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(operation_id="applications_current", responses=ApplicationOutput)
    def get(self, request: Request) -> Response:
        application = request.auth.application
        ready = channels_ready(application=application)  # the key's application, loaded
        public_key = None
        if ready.get(WEB_PUSH):
            values = channel_credentials_get(application=application, channel=WEB_PUSH)
            public_key = values.get("vapid_public_key")
        return Response(
            ApplicationOutput(
                {
                    "id": application.pk,
                    "name": application.name,
                    "channels": ready,
                    "web_push_public_key": public_key,
                }
            ).data
        )
