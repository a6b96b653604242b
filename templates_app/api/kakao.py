"""`GET /kakao-templates` (server keys only): the application's KakaoTalk AlimTalk templates as
last read from the dealer (templates_app.kakao)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ResultsCursorPagination, StrictQuerySerializer

from .. import selectors
from ..models import KakaoTemplate


class KakaoTemplateListQuery(StrictQuerySerializer):
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    status = serializers.CharField(
        required=False, max_length=10, help_text="Only this status, e.g. TSC03 (approved)."
    )


class KakaoTemplateOutput(serializers.ModelSerializer):
    variables = serializers.ListField(
        child=serializers.CharField(), help_text="The names of the text's #{variables}."
    )
    buttons = serializers.ListField(child=serializers.DictField())

    class Meta:
        model = KakaoTemplate
        fields = ("template_code", "name", "text", "variables", "buttons", "status", "synced_at")
        extra_kwargs = {
            "status": {"help_text": "TSC01 requested, TSC02 inspecting, TSC03 approved, "
                       "TSC04 rejected: only TSC03 templates can be sent."},
        }  # fmt: skip


class KakaoTemplatePagination(ResultsCursorPagination):
    ordering = "template_code"


class KakaoTemplateCollectionApi(APIView):
    pagination_class = KakaoTemplatePagination

    @extend_schema(
        operation_id="kakao_templates_list",
        parameters=[KakaoTemplateListQuery],
        responses=KakaoTemplateOutput(many=True),
        description="The application's KakaoTalk AlimTalk templates as last read from the "
        "dealer's template list (on a schedule, and by `python manage.py "
        "sync_kakao_templates`), by code. A message's `kakao.template_code` must name one "
        "whose status is TSC03 (approved), and its `kakao.variables` fill every `#{name}` of "
        "the text.",
    )
    def get(self, request: Request) -> Response:
        query = KakaoTemplateListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.kakao_template_list(
                application=request.auth.application, status=query.validated_data.get("status")
            ),
            request,
            view=self,
        )
        return paginator.get_paginated_response(KakaoTemplateOutput(page, many=True).data)
