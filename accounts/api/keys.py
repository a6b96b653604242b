"""`/api-keys` (server key): list, create (the raw key shown once) and revoke the calling
application's keys. Parse, call one service or selector, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import PageQuery, ResultsCursorPagination, StrictSerializer, paginated

from ..models import ApiKey
from ..selectors import api_key_get, api_key_list
from ..services import actor_of, api_key_create, api_key_revoke


class ApiKeyOutput(serializers.ModelSerializer):
    """A key as lists show it: never the key itself, nor its digest."""

    prefix = serializers.CharField(
        help_text="The key's first 11 characters: how logs and the audit log name it."
    )

    class Meta:
        model = ApiKey
        fields = ["id", "scope", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreatedOutput(serializers.Serializer):
    id = serializers.UUIDField()
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices)
    name = serializers.CharField(allow_blank=True)
    prefix = serializers.CharField()
    key = serializers.CharField(
        help_text="The key to send as X-API-Key. Shown in this response only: store it now."
    )


class ApiKeyCreateInput(StrictSerializer):
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices)
    name = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="What the key is for, e.g. the service or app that uses it.",
    )


class ApiKeyListFilters(PageQuery):
    active = serializers.BooleanField(
        required=False,
        help_text="true: only keys not revoked; false: only revoked ones; absent: all.",
    )


class ApiKeyCollectionApi(APIView):
    pagination_class = ResultsCursorPagination

    @extend_schema(
        operation_id="api_keys_list",
        parameters=[ApiKeyListFilters],
        responses=ApiKeyOutput(many=True),
        description="The application's API keys, newest first (never the keys themselves).",
    )
    def get(self, request: Request) -> Response:
        filters = ApiKeyListFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        keys = api_key_list(
            application=request.auth.application, active=filters.validated_data.get("active")
        )
        return paginated(request, self, keys, ApiKeyOutput)

    @extend_schema(
        operation_id="api_keys_create",
        request=ApiKeyCreateInput,
        responses={201: ApiKeyCreatedOutput},
        description="Creates a key for the application. The raw `key` is in this response "
        "only; the service keeps a digest of it.",
    )
    def post(self, request: Request) -> Response:
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        new = api_key_create(
            application=request.auth.application,
            actor=actor_of(request.auth),
            **data.validated_data,
        )
        api_key = new.api_key
        body = {
            "id": api_key.pk,
            "scope": api_key.scope,
            "name": api_key.name,
            "prefix": api_key.prefix,
            "key": new.raw,
        }
        return Response(ApiKeyCreatedOutput(body).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(APIView):
    @extend_schema(
        operation_id="api_keys_revoke",
        request=None,
        responses={204: None},
        description="Revokes the key at once: the next request made with it is 401. The "
        "calling key may revoke itself. Revoking a revoked key is a no-op.",
    )
    def delete(self, request: Request, api_key_id) -> Response:
        api_key = api_key_get(application=request.auth.application, api_key_id=api_key_id)
        api_key_revoke(api_key=api_key, actor=actor_of(request.auth))
        return Response(status=status.HTTP_204_NO_CONTENT)
