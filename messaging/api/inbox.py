"""The in-app inbox endpoints (all but the stream, served by the ASGI app): client or server
key; every call names its subscription (`?subscription_id=`), checked with the caller's
identity by messaging.inbox.access."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.auth import IsServerOrClientKey
from accounts.identity import HEADER as USER_HASH_HEADER
from accounts.services import actor_of
from core.api import ResultsCursorPagination, paginated
from core.openapi import error_response

from ..inbox.access import inbox_subscription
from ..inbox.selectors import inbox_count_get, inbox_item_list
from ..inbox.services import inbox_item_archive, inbox_item_read, inbox_item_unread, inbox_read_all
from ..inbox.shape import count_json, item_json
from .serializers.inbox import InboxCountOutput, InboxItemOutput, InboxListQuery, InboxQuery

ERRORS = {
    401: error_response(
        "authentication_failed: no valid key, or identity verification is on and X-User-Hash "
        "is missing or wrong."
    ),
    404: error_response("not_found: no such InAppMessage subscription (or item) of this inbox."),
}


def _subscription(request: Request, query_class=InboxQuery):
    query = query_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    subscription = inbox_subscription(
        api_key=request.auth,
        subscription_id=query.validated_data["subscription_id"],
        user_hash=request.META.get(USER_HASH_HEADER),
    )
    return subscription, query.validated_data


class InboxListApi(APIView):
    permission_classes = [IsServerOrClientKey]
    pagination_class = ResultsCursorPagination

    @extend_schema(
        operation_id="inbox_list",
        parameters=[InboxListQuery],
        responses={200: InboxItemOutput(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        subscription, query = _subscription(request, InboxListQuery)
        items = inbox_item_list(subscription=subscription, state=query["state"])
        return paginated(request, self, items, InboxItemOutput)


class InboxCountApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(
        operation_id="inbox_count",
        parameters=[InboxQuery],
        responses={200: InboxCountOutput, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        subscription, _query = _subscription(request)
        return Response(count_json(*inbox_count_get(subscription=subscription)))


class _InboxItemActionApi(APIView):
    permission_classes = [IsServerOrClientKey]

    def act(self, request: Request, subscription, item_id):
        raise NotImplementedError

    def post(self, request: Request, item_id) -> Response:
        subscription, _query = _subscription(request)
        return Response(item_json(self.act(request, subscription, item_id)))


class InboxItemReadApi(_InboxItemActionApi):
    @extend_schema(
        operation_id="inbox_item_read",
        parameters=[InboxQuery],
        request=None,
        responses={200: InboxItemOutput, **ERRORS},
        description="Marks the item read; its message becomes `received`.",
    )
    def post(self, request: Request, item_id) -> Response:
        return super().post(request, item_id)

    def act(self, request, subscription, item_id):
        return inbox_item_read(
            subscription=subscription, item_id=item_id, actor=actor_of(request.auth)
        )


class InboxItemUnreadApi(_InboxItemActionApi):
    @extend_schema(
        operation_id="inbox_item_unread",
        parameters=[InboxQuery],
        request=None,
        responses={200: InboxItemOutput, **ERRORS},
    )
    def post(self, request: Request, item_id) -> Response:
        return super().post(request, item_id)

    def act(self, request, subscription, item_id):
        return inbox_item_unread(subscription=subscription, item_id=item_id)


class InboxItemArchiveApi(_InboxItemActionApi):
    @extend_schema(
        operation_id="inbox_item_archive",
        parameters=[InboxQuery],
        request=None,
        responses={200: InboxItemOutput, **ERRORS},
    )
    def post(self, request: Request, item_id) -> Response:
        return super().post(request, item_id)

    def act(self, request, subscription, item_id):
        return inbox_item_archive(subscription=subscription, item_id=item_id)


class InboxReadAllApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(
        operation_id="inbox_read_all",
        parameters=[InboxQuery],
        request=None,
        responses={200: InboxCountOutput, **ERRORS},
        description="Marks every unread item read (their messages become `received`); "
        "returns the new count.",
    )
    def post(self, request: Request) -> Response:
        subscription, _query = _subscription(request)
        counts = inbox_read_all(subscription=subscription, actor=actor_of(request.auth))
        return Response(count_json(*counts))
