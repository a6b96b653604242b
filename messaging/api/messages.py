"""Message endpoints: send, read, list, the client's status reports, and sending a failed
message again. Parse, call one service or selector, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.auth import IsServerOrClientKey
from accounts.services import actor_of
from core.api import ResultsCursorPagination, paginated
from core.idempotency import IDEMPOTENCY_HEADER, idempotent_call
from core.openapi import error_response

from ..rules import SKIP_REASONS
from ..selectors.messages import message_fallback_next, message_get, message_list
from ..services.fallback import FallbackOutcome, fallback_create
from ..services.messages import message_create, message_report_status, message_retry
from .serializers.messages import (
    MessageAcceptedOutput,
    MessageCreateInput,
    MessageDetailOutput,
    MessageListFilters,
    MessageOutput,
    MessageStatusInput,
)


class MessageCollectionApi(APIView):
    pagination_class = ResultsCursorPagination

    @extend_schema(
        operation_id="messages_create",
        request=MessageCreateInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            202: inline_serializer(
                "MessagesAccepted",
                {
                    "messages": MessageAcceptedOutput(many=True),
                    "skipped": serializers.IntegerField(),
                    "skipped_by_reason": inline_serializer(
                        "SkippedByReason",
                        {reason: serializers.IntegerField() for reason in SKIP_REASONS},
                    ),
                    "fallback": inline_serializer(
                        "FallbackStarted",
                        {
                            "id": serializers.UUIDField(),
                            "channel": serializers.CharField(),
                            "status": serializers.CharField(),
                        },
                        allow_null=True,
                        required=False,
                        help_text="With `fallback` only: the chain and its first hop's type; "
                        "null when no type of the order could be sent to.",
                    ),
                },
            ),
            404: error_response(
                "not_found: a target subscription or user, or the template, is not one of this "
                "application's."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        application = request.auth.application

        def produce() -> tuple[int, dict]:
            data = MessageCreateInput(data=request.data)
            data.is_valid(raise_exception=True)
            send = fallback_create if "fallback" in data.validated_data else message_create
            outcome = send(application=application, **data.validated_data)
            body = {
                # The shape of MessageAcceptedOutput, built directly: this is the hottest
                # response of the API, and a ModelSerializer rebuilds its fields per call.
                "messages": [
                    {"id": str(m.pk), "subscription_id": str(m.subscription_id), "status": m.status}
                    for m in outcome.messages
                ],
                "skipped": outcome.skipped,
                "skipped_by_reason": {
                    reason: outcome.skipped_by_reason.get(reason, 0) for reason in SKIP_REASONS
                },
            }
            if isinstance(outcome, FallbackOutcome):
                chain = outcome.chain
                body["fallback"] = chain and {
                    "id": str(chain.pk), "channel": chain.channel, "status": chain.status,
                }  # fmt: skip
            return status.HTTP_202_ACCEPTED, body

        code, body = idempotent_call(
            owner_id=application.pk,
            endpoint="messages",
            key=request.headers.get("Idempotency-Key"),
            body=request.data,
            produce=produce,
        )
        return Response(body, status=code)

    @extend_schema(
        operation_id="messages_list",
        parameters=[MessageListFilters],
        responses=MessageOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = MessageListFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        queryset = message_list(
            application=request.auth.application, filters=filters.validated_data
        )
        return paginated(request, self, queryset, MessageOutput)


class MessageDetailApi(APIView):
    @extend_schema(operation_id="messages_retrieve", responses=MessageDetailOutput)
    def get(self, request: Request, message_id) -> Response:
        message = message_get(
            application=request.auth.application, message_id=message_id, with_events=True
        )
        following = message_fallback_next(message=message)
        return Response(MessageDetailOutput(message, context={"fallback_next": following}).data)


class MessageStatusApi(APIView):
    permission_classes = [IsServerOrClientKey]

    @extend_schema(
        operation_id="messages_status_update",
        request=MessageStatusInput,
        responses={
            200: MessageOutput,
            409: error_response(
                "invalid_transition: the message's state does not allow this status."
            ),
        },
        description="The client reports `received` or `converted`. Repeating the current "
        "status is a no-op; a transition the state machine refuses is 409 invalid_transition.",
    )
    def put(self, request: Request, message_id) -> Response:
        message = message_get(application=request.auth.application, message_id=message_id)
        data = MessageStatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        message = message_report_status(
            message=message, status=data.validated_data["status"], actor=actor_of(request.auth)
        )
        return Response(MessageOutput(message).data)


class MessageRetryApi(APIView):
    @extend_schema(
        operation_id="messages_retry",
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            202: MessageOutput,
            400: error_response(
                "validation_error: the Idempotency-Key header is longer than its limit."
            ),
            409: error_response(
                "invalid_transition: only a failed message whose subscription is enabled can "
                "be retried, and only once (retry the retry if it fails in its turn)."
            ),
        },
        description="Sends a failed message again: a new pending message to the same "
        "subscription with the same content, whose `retry_of` is the failed one. It keeps "
        "the failed message's `campaign_id` but is no part of the campaign's run or stats.",
    )
    def post(self, request: Request, message_id) -> Response:
        application = request.auth.application

        def produce() -> tuple[int, dict]:
            message = message_get(application=application, message_id=message_id)
            retry = message_retry(message=message, actor=actor_of(request.auth))
            return status.HTTP_202_ACCEPTED, MessageOutput(retry).data

        code, body = idempotent_call(
            owner_id=application.pk,
            endpoint="messages.retry",
            key=request.headers.get("Idempotency-Key"),
            # The message is part of the request: one key retries one message.
            body={"message_id": str(message_id)},
            produce=produce,
        )
        return Response(body, status=code)
