"""User endpoints: parse, call one service or selector, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
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
from ..selectors.subscriptions import subscription_get
from ..selectors.users import user_get, user_subscription_list
from ..services.users import user_identify, user_logout
from .serializers.subscriptions import SubscriptionDetailOutput, SubscriptionOutput
from .serializers.users import IdentifyInput, LogoutInput, UserOutput

IDENTITY_REFUSED = error_response(
    "authentication_failed: no valid key, or identity verification is on and the client "
    "key's X-User-Hash is missing or not the user's."
)
NO_SUCH_SUBSCRIPTION = error_response(
    "not_found: the subscription is not one of this application's."
)


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
            external_user_id=check_text(external_user_id, field="external_user_id"),
        )
        queryset = user_subscription_list(user=user)
        return paginated(request, self, queryset, SubscriptionOutput)
