"""User endpoints: parse, call one service or selector, reply."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.auth import IsServerOrClientKey
from accounts.identity import HEADER as USER_HASH_HEADER
from accounts.identity import identity_verify
from accounts.services import actor_of
from core.api import PageQuery, ResultsCursorPagination, paginated
from core.openapi import error_response
from core.validation import check_text

from ..inbox.access import subscription_identity_check
from ..models import User
from ..selectors.subscriptions import subscription_get
from ..selectors.users import user_get, user_subscription_list
from ..services.erasure import user_erase, user_export
from ..services.users import user_identify, user_logout, user_tags_update
from .serializers.subscriptions import SubscriptionDetailOutput, SubscriptionOutput
from .serializers.users import IdentifyInput, LogoutInput, UserOutput, UserTagsInput

IDENTITY_REFUSED = error_response(
    "authentication_failed: no valid key, or identity verification is on and the client "
    "key's X-User-Hash is missing or not the user's."
)
NO_SUCH_SUBSCRIPTION = error_response(
    "not_found: the subscription is not one of this application's."
)
NO_SUCH_USER = error_response("not_found: the application has no user with this external id.")
BAD_EXTERNAL_ID = error_response(
    "validation_error: the external user id is longer than 255 characters or holds a "
    "character that cannot be stored (details: external_user_id -> messages)."
)
MAX_EXTERNAL_ID_LENGTH = User._meta.get_field("external_user_id").max_length
# The export document's outline (messaging.selectors.export has it field by field).
EXPORT_SCHEMA = {
    "type": "object",
    "required": ["user", "subscriptions", "messages"],
    "properties": {
        "user": {
            "type": "object",
            "description": "id, external_user_id, tags, preferences, created_at.",
        },
        "subscriptions": {
            "type": "array",
            "description": "Every field of each (the token decrypted, its own `preferences`), "
            "with its `events` and `inbox_count`.",
            "items": {"type": "object"},
        },
        "messages": {
            "type": "array",
            "description": "The messages of those subscriptions, newest first per "
            "subscription: content, status, errors and times, with their `events` and "
            "`inbox_item`.",
            "items": {"type": "object"},
        },
    },
}


def _external_user_id(value: str) -> str:
    return check_text(value, field="external_user_id", max_length=MAX_EXTERNAL_ID_LENGTH)


class UserIdentifyApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(
        operation_id="users_identify",
        request=IdentifyInput,
        responses={200: UserOutput, 401: IDENTITY_REFUSED, 404: NO_SUCH_SUBSCRIPTION},
    )
    def post(self, request: Request) -> Response:
        data = IdentifyInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = subscription_get(
            application=request.auth.application,
            subscription_id=data.validated_data["subscription_id"],
        )
        # Under identity verification a client key proves the user it identifies as.
        identity_verify(
            api_key=request.auth,
            external_user_id=data.validated_data["external_user_id"],
            given=request.META.get(USER_HASH_HEADER),
        )
        user = user_identify(
            subscription=subscription,
            external_user_id=data.validated_data["external_user_id"],
            actor=actor_of(request.auth),
        )
        return Response(UserOutput(user).data)


class UserLogoutApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(
        operation_id="users_logout",
        request=LogoutInput,
        responses={200: SubscriptionDetailOutput, 401: IDENTITY_REFUSED, 404: NO_SUCH_SUBSCRIPTION},
    )
    def post(self, request: Request) -> Response:
        data = LogoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = subscription_get(
            application=request.auth.application,
            subscription_id=data.validated_data["subscription_id"],
        )
        if subscription.user is not None:  # without a user, logging out changes nothing
            subscription_identity_check(
                api_key=request.auth,
                subscription=subscription,
                user_hash=request.META.get(USER_HASH_HEADER),
            )
        subscription = user_logout(subscription=subscription, actor=actor_of(request.auth))
        return Response(SubscriptionDetailOutput(subscription).data)


class UserSubscriptionListApi(APIView):
    pagination_class = ResultsCursorPagination

    @extend_schema(operation_id="users_subscriptions_list", responses=SubscriptionOutput(many=True))
    def get(self, request: Request, external_user_id: str) -> Response:
        PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        user = user_get(
            application=request.auth.application,
            external_user_id=_external_user_id(external_user_id),
        )
        queryset = user_subscription_list(user=user)
        return paginated(request, self, queryset, SubscriptionOutput)


class UserDetailApi(APIView):
    @extend_schema(
        operation_id="users_retrieve",
        responses={200: UserOutput, 400: BAD_EXTERNAL_ID, 404: NO_SUCH_USER},
    )
    def get(self, request: Request, external_user_id: str) -> Response:
        user = user_get(
            application=request.auth.application,
            external_user_id=_external_user_id(external_user_id),
        )
        return Response(UserOutput(user).data)

    @extend_schema(
        operation_id="users_update",
        request=UserTagsInput,
        responses={200: UserOutput, 400: BAD_EXTERNAL_ID},
        description="Merges tags into the user's (creating the user if the application has "
        'none with this external id yet); a tag set to null or "" is removed.',
    )
    def put(self, request: Request, external_user_id: str) -> Response:
        external_user_id = _external_user_id(external_user_id)
        data = UserTagsInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_tags_update(
            application=request.auth.application,
            external_user_id=external_user_id,
            tags=data.validated_data["tags"],
        )
        return Response(UserOutput(user).data)

    @extend_schema(
        operation_id="users_destroy",
        responses={
            204: OpenApiResponse(description="Erased."),
            400: BAD_EXTERNAL_ID,
            404: NO_SUCH_USER,
        },
        description="Erases the user, its subscriptions, their messages, events and inbox "
        "items; messages queued for them are not sent. The audit log keeps that it happened, "
        "with counts.",
    )
    def delete(self, request: Request, external_user_id: str) -> Response:
        user = user_get(
            application=request.auth.application,
            external_user_id=_external_user_id(external_user_id),
        )
        user_erase(user=user, actor=actor_of(request.auth), api_key=request.auth)
        return Response(status=204)


class UserExportApi(APIView):
    @extend_schema(
        operation_id="users_export",
        responses={
            200: OpenApiResponse(
                response=EXPORT_SCHEMA,
                description="Everything stored about the user, as one JSON document (an "
                "attachment).",
            ),
            400: BAD_EXTERNAL_ID,
            404: NO_SUCH_USER,
        },
    )
    def get(self, request: Request, external_user_id: str) -> StreamingHttpResponse:
        user = user_get(
            application=request.auth.application,
            external_user_id=_external_user_id(external_user_id),
        )
        chunks = user_export(user=user, actor=actor_of(request.auth), api_key=request.auth)
        response = StreamingHttpResponse(
            (chunk.encode() for chunk in chunks), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="user-{user.pk}.json"'
        return response
