"""Subscription and user endpoints: parse, call one service, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from signal_project.api import PageQuery, ResultsCursorPagination
from signal_project.openapi import error_response
from signal_project.validation import check_text

from .. import selectors, services
from .auth import IsServerKey, IsServerOrClientKey
from .serializers import (
    IdentifyInput,
    LogoutInput,
    SubscriptionCreateInput,
    SubscriptionDetailOutput,
    SubscriptionListFilters,
    SubscriptionOutput,
    SubscriptionUpdateInput,
    UserOutput,
)


def paginated(request: Request, view: APIView, queryset, serializer_class) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


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
        subscription, created = services.subscription_register(
            application=request.auth.application,
            actor=services.actor_of(request.auth),
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
        queryset = selectors.subscription_list(
            application=request.auth.application, filters=filters.validated_data
        )
        return paginated(request, self, queryset, SubscriptionOutput)


class SubscriptionDetailApi(APIView):
    def get_permissions(self):
        return [IsServerKey()] if self.request.method == "DELETE" else [IsServerOrClientKey()]

    def _subscription(self, request: Request, subscription_id):
        return selectors.subscription_get(
            application=request.auth.application, subscription_id=subscription_id
        )

    @extend_schema(operation_id="subscriptions_retrieve", responses=SubscriptionDetailOutput)
    def get(self, request: Request, subscription_id) -> Response:
        return Response(SubscriptionDetailOutput(self._subscription(request, subscription_id)).data)

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
        try:
            subscription = services.subscription_update(
                subscription=subscription,
                actor=services.actor_of(request.auth),
                **data.validated_data,
            )
        except services.TokenTaken as exc:
            raise serializers.ValidationError(
                {"token": ["Another subscription of this type already has this token."]}
            ) from exc
        return Response(SubscriptionDetailOutput(subscription).data)

    @extend_schema(operation_id="subscriptions_destroy", responses={204: None})
    def delete(self, request: Request, subscription_id) -> Response:
        services.subscription_delete(subscription=self._subscription(request, subscription_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


NO_SUCH_SUBSCRIPTION = error_response(
    "not_found: the subscription is not one of this application's."
)


class UserIdentifyApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(
        operation_id="users_identify",
        request=IdentifyInput,
        responses={200: UserOutput, 404: NO_SUCH_SUBSCRIPTION},
    )
    def post(self, request: Request) -> Response:
        data = IdentifyInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = selectors.subscription_get(
            application=request.auth.application,
            subscription_id=data.validated_data["subscription_id"],
        )
        user = services.user_identify(
            subscription=subscription,
            external_user_id=data.validated_data["external_user_id"],
            actor=services.actor_of(request.auth),
        )
        return Response(UserOutput(user).data)


class UserLogoutApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(
        operation_id="users_logout",
        request=LogoutInput,
        responses={200: SubscriptionDetailOutput, 404: NO_SUCH_SUBSCRIPTION},
    )
    def post(self, request: Request) -> Response:
        data = LogoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = selectors.subscription_get(
            application=request.auth.application,
            subscription_id=data.validated_data["subscription_id"],
        )
        subscription = services.user_logout(
            subscription=subscription, actor=services.actor_of(request.auth)
        )
        return Response(SubscriptionDetailOutput(subscription).data)


class UserSubscriptionListApi(APIView):
    pagination_class = ResultsCursorPagination

    @extend_schema(operation_id="users_subscriptions_list", responses=SubscriptionOutput(many=True))
    def get(self, request: Request, external_user_id: str) -> Response:
        PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        user = selectors.user_get(
            application=request.auth.application,
            external_user_id=check_text(external_user_id, field="external_user_id"),
        )
        queryset = selectors.user_subscription_list(user=user)
        return paginated(request, self, queryset, SubscriptionOutput)
