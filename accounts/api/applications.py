"""`GET /applications/current`: the calling key's application, as a browser or an app needs
it to subscribe (which channels can send, the Web Push public key), and its settings; `PUT`
(server key) changes the settings: identity verification, retention, allowed origins and the
frequency cap."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import StrictSerializer
from core.channels import CHANNELS, WEB_PUSH
from core.openapi import RequestRules

from ..models import MAX_RETENTION_DAYS
from ..selectors import channel_credentials_get, channels_ready
from ..services import (
    MAX_CAP,
    MAX_CAP_WINDOW_SECONDS,
    ORIGIN_PATTERN,
    actor_of,
    application_settings_update,
    origin_clean,
)
from .auth import IsServerKey, IsServerOrClientKey

_CAP_HELP = (
    'At most "max" messages of non-required categories per user (or subscription without '
    'one), over all channels, in any window of "per_seconds"; the rest are left out as '
    "frequency_cap. null: no cap."
)


class FrequencyCapOutput(serializers.Serializer):
    max = serializers.IntegerField()
    per_seconds = serializers.IntegerField()


class FrequencyCapInput(StrictSerializer):
    max = serializers.IntegerField(min_value=1, max_value=MAX_CAP)
    per_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_CAP_WINDOW_SECONDS, help_text="At most 31 days."
    )


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
    retention_days = serializers.IntegerField(
        help_text="Messages and their events are deleted this many days after they were made."
    )
    allowed_origins = serializers.ListField(
        child=serializers.CharField(),
        help_text="Web origins whose pages may call the API with a client key (CORS).",
    )
    frequency_cap = FrequencyCapOutput(allow_null=True, help_text=_CAP_HELP)
    web_push_public_key = serializers.CharField(
        allow_null=True,
        help_text="The VAPID public key (base64url): the applicationServerKey a browser "
        "subscribes with; null when Web Push has no credentials.",
    )


MAX_ORIGIN_LENGTH = 300


@extend_schema_field(
    {
        "type": "string",
        "pattern": ORIGIN_PATTERN,
        "maxLength": MAX_ORIGIN_LENGTH,
        "description": 'A web origin, e.g. "https://shop.example.com" or "http://127.0.0.1:8080".',
    }
)
class OriginField(serializers.CharField):
    """An origin exactly as given (no trimming: the pattern in the document is the rule)."""

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, max_length=MAX_ORIGIN_LENGTH, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return origin_clean(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None


class ApplicationUpdateInput(StrictSerializer):
    identity_verification = serializers.BooleanField(required=False)
    retention_days = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_RETENTION_DAYS
    )
    allowed_origins = serializers.ListField(child=OriginField(), required=False, max_length=100)
    frequency_cap = FrequencyCapInput(required=False, allow_null=True, help_text=_CAP_HELP)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                "Give at least one of identity_verification, retention_days, allowed_origins, "
                "frequency_cap."
            )
        if "allowed_origins" in attrs:  # kept in the order given, without repeats
            attrs["allowed_origins"] = list(dict.fromkeys(attrs["allowed_origins"]))
        return attrs


class ApplicationUpdateRules(RequestRules):
    """What validate() requires, in JSON Schema: at least one field."""

    target_class = ApplicationUpdateInput
    body_required = True
    rules = {"minProperties": 1}


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
        "retention_days": application.retention_days,
        "allowed_origins": application.allowed_origins,
        "frequency_cap": application.frequency_cap,
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
        description="Sets any of identity verification, retention_days, allowed_origins and "
        "frequency_cap (null removes the cap) (server key); each change is in the audit log.",
    )
    def put(self, request: Request) -> Response:
        data = ApplicationUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        application, secret = application_settings_update(
            application=request.auth.application,
            actor=actor_of(request.auth),
            **data.validated_data,
        )
        body = _application_json(application)
        if secret:
            body["identity_secret"] = secret
        return Response(ApplicationUpdateOutput(body).data)
