"""`GET /applications/current`: the calling key's application, as a browser or an app needs
it to subscribe (which channels can send, the Web Push public key); `PUT` (server key) turns
identity verification on or off."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import StrictSerializer
from core.channels import CHANNELS, WEB_PUSH

from ..selectors import channel_credentials_get, channels_ready
from ..services import identity_verification_set
from .auth import IsServerKey, IsServerOrClientKey


class ApplicationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    channels = serializers.DictField(
        child=serializers.BooleanField(),
        help_text=f"Channel -> whether it can send ({', '.join(CHANNELS)}).",
    )
    identity_verification = serializers.BooleanField(
        help_text="Whether client-key calls acting for a user must carry X-User-Hash."
    )
    web_push_public_key = serializers.CharField(
        allow_null=True,
        help_text="The VAPID public key (base64url): the applicationServerKey a browser "
        "subscribes with; null when Web Push has no credentials.",
    )


class ApplicationUpdateInput(StrictSerializer):
    identity_verification = serializers.BooleanField()


class ApplicationUpdateOutput(ApplicationOutput):
    identity_secret = serializers.CharField(
        required=False,
        help_text="Only in the response that turned identity verification on for the first "
        "time: the secret (hex) backends compute X-User-Hash with. Not shown again.",
    )


def _application_json(application) -> dict:
    ready = channels_ready(application=application)
    public_key = None
    if ready.get(WEB_PUSH):
        values = channel_credentials_get(application=application, channel=WEB_PUSH)
        public_key = values.get("vapid_public_key")
    return {
        "id": application.pk,
        "name": application.name,
        "channels": ready,
        "identity_verification": application.identity_verification,
        "web_push_public_key": public_key,
    }


class ApplicationCurrentApi(APIView):
    def get_permissions(self):
        return [IsServerKey()] if self.request.method == "PUT" else [IsServerOrClientKey()]

    @extend_schema(operation_id="applications_current", responses=ApplicationOutput)
    def get(self, request: Request) -> Response:
        # the key's application, loaded
        return Response(ApplicationOutput(_application_json(request.auth.application)).data)

    @extend_schema(
        operation_id="applications_current_update",
        request=ApplicationUpdateInput,
        responses=ApplicationUpdateOutput,
        description="Turns identity verification on or off (server key).",
    )
    def put(self, request: Request) -> Response:
        data = ApplicationUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        application = request.auth.application
        secret = identity_verification_set(
            application=application, enabled=data.validated_data["identity_verification"]
        )
        application.identity_verification = data.validated_data["identity_verification"]
        body = _application_json(application)
        if secret:
            body["identity_secret"] = secret
        return Response(ApplicationUpdateOutput(body).data)
