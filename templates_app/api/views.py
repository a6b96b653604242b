"""Template endpoints (server keys only): parse, call one service, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ResultsCursorPagination

from .. import selectors, services
from ..rendering import render
from .serializers import (
    RenderedOutput,
    RenderInput,
    TemplateInput,
    TemplateListQuery,
    TemplateOutput,
    TemplateUpdate,
    TemplateVersionQuery,
)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class TemplateCollectionApi(APIView):
    pagination_class = ResultsCursorPagination

    @extend_schema(
        operation_id="templates_create",
        request=TemplateInput,
        responses={201: TemplateOutput},
        description="Creates a template (version 1). Names are unique per application: a "
        "taken name is a 400 validation_error on `name`.",
    )
    def post(self, request: Request) -> Response:
        data = _valid(TemplateInput, request.data)
        version = services.template_create(application=request.auth.application, **data)
        return Response(TemplateOutput(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="templates_list",
        parameters=[TemplateListQuery],
        responses=TemplateOutput(many=True),
        description="The application's templates, newest first, each in its newest version.",
    )
    def get(self, request: Request) -> Response:
        _valid(TemplateListQuery, request.query_params.dict())
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.template_list(application=request.auth.application), request, view=self
        )
        versions = []
        for template in page:
            template.current.template = template
            versions.append(template.current)
        return paginator.get_paginated_response(TemplateOutput(versions, many=True).data)


class TemplateDetailApi(APIView):
    def _version(self, request: Request, template_id, version: int | None = None):
        return selectors.template_get(
            application=request.auth.application, template_id=template_id, version=version
        )

    @extend_schema(
        operation_id="templates_retrieve",
        parameters=[TemplateVersionQuery],
        responses=TemplateOutput,
        description="The newest version, or `?version=N`; an unknown version is 404.",
    )
    def get(self, request: Request, template_id) -> Response:
        query = _valid(TemplateVersionQuery, request.query_params.dict())
        version = self._version(request, template_id, query.get("version"))
        return Response(TemplateOutput(version).data)

    @extend_schema(
        operation_id="templates_update",
        request=TemplateUpdate,
        responses=TemplateOutput,
        description="Changes any subset of the fields (the others keep their values) and "
        "stores the result as a new version, numbered one above the newest. Earlier versions "
        "stay readable with `?version=N`.",
    )
    def put(self, request: Request, template_id) -> Response:
        template = self._version(request, template_id).template
        data = _valid(TemplateUpdate, request.data)
        version = services.template_update(template=template, **data)
        return Response(TemplateOutput(version).data)

    @extend_schema(
        operation_id="templates_destroy",
        responses={204: None},
        description="Deletes the template from the API; the versions that messages and "
        "campaigns used stay on record.",
    )
    def delete(self, request: Request, template_id) -> Response:
        services.template_delete(template=self._version(request, template_id).template)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplateRenderApi(APIView):
    @extend_schema(
        operation_id="templates_render",
        request=RenderInput,
        responses=RenderedOutput,
        description="Renders the newest version (or `version`) in `language`, falling back "
        "to its base language (`en` for `en-US`) and then the template's default. Unknown "
        "variables render as empty and are listed in `missing_variables`.",
    )
    def post(self, request: Request, template_id) -> Response:
        data = _valid(RenderInput, request.data)
        version = selectors.template_get(
            application=request.auth.application,
            template_id=template_id,
            version=data.get("version"),
        )
        rendered = render(version, data["variables"], data.get("language"))
        return Response(RenderedOutput(rendered).data)
