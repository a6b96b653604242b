"""Campaign endpoints: parse, call one service, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services import actor_of
from core.api import PageQuery, ResultsCursorPagination, paginated
from core.idempotency import IDEMPOTENCY_HEADER, idempotent_call
from core.openapi import error_response
from templates_app.selectors import template_get

from .. import selectors, services
from .serializers import (
    CampaignInput,
    CampaignListFilters,
    CampaignOutput,
    CampaignUpdate,
    PreviewOutput,
    RunOutput,
)


def _fields(application, data: dict) -> dict:
    """Validated input -> model fields (the template resolved within the application)."""
    fields = dict(data)
    if "template_id" in fields:
        template_id = fields.pop("template_id")
        fields["template"] = (
            template_get(application=application, template_id=template_id).template
            if template_id
            else None
        )
    return fields


NO_SUCH_TEMPLATE = error_response("not_found: the template is not one of this application's.")


def refused(action: str):
    return error_response(
        f"invalid_transition: the campaign's status does not allow it to be {action}."
    )


class CampaignCollectionApi(APIView):
    pagination_class = ResultsCursorPagination

    @extend_schema(
        operation_id="campaigns_create",
        request=CampaignInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: CampaignOutput, 404: NO_SUCH_TEMPLATE},
    )
    def post(self, request: Request) -> Response:
        application = request.auth.application

        def produce() -> tuple[int, dict]:
            data = CampaignInput(data=request.data)
            data.is_valid(raise_exception=True)
            campaign = services.campaign_create(
                application=application, **_fields(application, data.validated_data)
            )
            return status.HTTP_201_CREATED, CampaignOutput(campaign).data

        code, body = idempotent_call(
            owner_id=application.pk,
            endpoint="campaigns",
            key=request.headers.get("Idempotency-Key"),
            body=request.data,
            produce=produce,
        )
        return Response(body, status=code)

    @extend_schema(
        operation_id="campaigns_list",
        parameters=[CampaignListFilters],
        responses=CampaignOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = CampaignListFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        queryset = selectors.campaign_list(
            application=request.auth.application, filters=filters.validated_data
        )
        return paginated(request, self, queryset, CampaignOutput)


class CampaignDetailApi(APIView):
    @extend_schema(operation_id="campaigns_retrieve", responses=CampaignOutput)
    def get(self, request: Request, campaign_id) -> Response:
        campaign = selectors.campaign_get(
            application=request.auth.application, campaign_id=campaign_id
        )
        return Response(CampaignOutput(campaign).data)

    @extend_schema(
        operation_id="campaigns_update",
        request=CampaignUpdate,
        responses={
            200: CampaignOutput,
            404: error_response("not_found: no such campaign or template in this application."),
            409: refused("changed"),
        },
        description="Changes any of the given fields while the campaign is draft or "
        "scheduled; otherwise 409 invalid_transition.",
    )
    def put(self, request: Request, campaign_id) -> Response:
        application = request.auth.application
        campaign = selectors.campaign_get(application=application, campaign_id=campaign_id)
        data = CampaignUpdate(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        campaign = services.campaign_update(
            campaign=campaign, **_fields(application, data.validated_data)
        )
        return Response(CampaignOutput(campaign).data)


class CampaignExecuteApi(APIView):
    @extend_schema(
        operation_id="campaigns_execute",
        request=None,
        responses={202: CampaignOutput, 409: refused("executed")},
    )
    def post(self, request: Request, campaign_id) -> Response:
        campaign = selectors.campaign_get(
            application=request.auth.application, campaign_id=campaign_id
        )
        run = services.campaign_execute(campaign=campaign, actor=actor_of(request.auth))
        return Response(CampaignOutput(run.campaign).data, status=status.HTTP_202_ACCEPTED)


class CampaignCancelApi(APIView):
    @extend_schema(
        operation_id="campaigns_cancel",
        request=None,
        responses={200: CampaignOutput, 409: refused("cancelled")},
    )
    def post(self, request: Request, campaign_id) -> Response:
        campaign = selectors.campaign_get(
            application=request.auth.application, campaign_id=campaign_id
        )
        campaign = services.campaign_cancel(campaign=campaign, actor=actor_of(request.auth))
        return Response(CampaignOutput(campaign).data)


class CampaignPauseApi(APIView):
    @extend_schema(
        operation_id="campaigns_pause",
        request=None,
        responses={200: CampaignOutput, 409: refused("paused")},
        description="Pauses a running campaign: no new batch of its run starts; messages "
        "already queued are still sent. Only a running campaign can be paused.",
    )
    def post(self, request: Request, campaign_id) -> Response:
        campaign = selectors.campaign_get(
            application=request.auth.application, campaign_id=campaign_id
        )
        campaign = services.campaign_pause(campaign=campaign, actor=actor_of(request.auth))
        return Response(CampaignOutput(campaign).data)


class CampaignResumeApi(APIView):
    @extend_schema(
        operation_id="campaigns_resume",
        request=None,
        responses={202: CampaignOutput, 409: refused("resumed")},
        description="Resumes a paused campaign where its run stopped: each subscription of "
        "the audience still gets exactly one message.",
    )
    def post(self, request: Request, campaign_id) -> Response:
        campaign = selectors.campaign_get(
            application=request.auth.application, campaign_id=campaign_id
        )
        campaign = services.campaign_resume(campaign=campaign, actor=actor_of(request.auth))
        return Response(CampaignOutput(campaign).data, status=status.HTTP_202_ACCEPTED)


class CampaignPreviewApi(APIView):
    @extend_schema(operation_id="campaigns_preview", request=None, responses=PreviewOutput)
    def post(self, request: Request, campaign_id) -> Response:
        campaign = selectors.campaign_get(
            application=request.auth.application, campaign_id=campaign_id
        )
        return Response(services.campaign_preview(campaign=campaign))


class RunPagination(ResultsCursorPagination):
    ordering = "-started_at"


class CampaignRunListApi(APIView):
    pagination_class = RunPagination

    @extend_schema(operation_id="campaigns_runs_list", responses=RunOutput(many=True))
    def get(self, request: Request, campaign_id) -> Response:
        PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        campaign = selectors.campaign_get(
            application=request.auth.application, campaign_id=campaign_id
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.campaign_runs(campaign=campaign), request, self
        )
        return paginator.get_paginated_response(RunOutput(page, many=True).data)
