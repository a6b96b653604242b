"""Subscription endpoints: parse, call one service or selector, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.auth import IsServerKey, IsServerOrClientKey
from accounts.identity import HEADER as USER_HASH_HEADER
from accounts.services import actor_of
from core.api import ResultsCursorPagination, paginated

from ..inbox.access import subscription_identity_check
from ..selectors.subscriptions import subscription_get, subscription_list
from ..services.subscriptions import (
    subscription_delete,
    subscription_register,
    subscription_update,
)
from .serializers.subscriptions import (
    SubscriptionCreateInput,
    SubscriptionDetailOutput,
    SubscriptionListFilters,
    SubscriptionOutput,
    SubscriptionUpdateInput,
)


class SubscriptionCollectionApi(APIView):
    pagination_class = ResultsCursorPagination

    def get_permissions(self):
        # Client keys may register subscriptions, but listing them is for servers.
        return [IsServerOrClientKey()] if self.request.method == "POST" else [IsServerKey()]

    @extend_schema(
        operation_id="subscriptions_create",
        request=SubscriptionCreateInput,
        responses={201: SubscriptionDetailOutput, 200: SubscriptionDetailOutput},
        description="Registers a subscription; the same (type, token) again returns 200 with "
        "the existing subscription, updated.",
    )
    def post(self, request: Request) -> Response:
        data = SubscriptionCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription, created = subscription_register(
            application=request.auth.application,
            actor=actor_of(request.auth),
            **data.validated_data,
        )
        return Response(
            SubscriptionDetailOutput(subscription).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="subscriptions_list",
        parameters=[SubscriptionListFilters],
        responses=SubscriptionOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = SubscriptionListFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        queryset = subscription_list(
            application=request.auth.application, filters=filters.validated_data
        )
        return paginated(request, self, queryset, SubscriptionOutput)


class SubscriptionDetailApi(APIView):
    def get_permissions(self):
        return [IsServerKey()] if self.request.method == "DELETE" else [IsServerOrClientKey()]

    def _subscription(self, request: Request, subscription_id):
        return subscription_get(
            application=request.auth.application, subscription_id=subscription_id
        )

    @extend_schema(operation_id="subscriptions_retrieve", responses=SubscriptionDetailOutput)
    def get(self, request: Request, subscription_id) -> Response:
        subscription = self._subscription(request, subscription_id)
        if subscription.user is not None:  # a user's subscription: its reader proves the user
            subscription_identity_check(
                api_key=request.auth,
                subscription=subscription,
                user_hash=request.META.get(USER_HASH_HEADER),
            )
        return Response(SubscriptionDetailOutput(subscription).data)

    @extend_schema(
        operation_id="subscriptions_update",
        request=SubscriptionUpdateInput,
        responses=SubscriptionDetailOutput,
        description="Updates any of the given fields; `tags` merge, and a tag set to null or "
        '"" is removed.',
    )
    def put(self, request: Request, subscription_id) -> Response:
        subscription = self._subscription(request, subscription_id)
        data = SubscriptionUpdateInput(data=request.data, context={"subscription": subscription})
        data.is_valid(raise_exception=True)
        subscription = subscription_update(
            subscription=subscription, actor=actor_of(request.auth), **data.validated_data
        )
        return Response(SubscriptionDetailOutput(subscription).data)

    @extend_schema(operation_id="subscriptions_destroy", responses={204: None})
    def delete(self, request: Request, subscription_id) -> Response:
        subscription_delete(subscription=self._subscription(request, subscription_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
