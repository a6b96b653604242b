"""`GET /audit-log` (server key): the calling application's audit rows, newest first."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import AwareDateTimeField, PageQuery, ResultsCursorPagination, paginated
from core.validation import InputInvalid, check_text

from ..audit import ACTIONS
from ..models import AuditEntry
from ..selectors import audit_entry_list


class AuditEntryOutput(serializers.ModelSerializer):
    actor = serializers.CharField(
        help_text='"api_key:<prefix>" (a key, by its first 11 characters), '
        '"admin:<username>" (the admin site) or "system" (commands, scheduled work).'
    )
    details = serializers.JSONField(
        help_text="What changed: ids, field names, counts; never secrets or personal data."
    )

    class Meta:
        model = AuditEntry
        fields = ["at", "actor", "action", "object_type", "object_id", "details"]


def _stored_text(value: str, field: str) -> str:
    try:
        return check_text(value, field=field)
    except InputInvalid as exc:
        raise serializers.ValidationError(exc.message) from exc


class AuditLogFilters(PageQuery):
    action = serializers.ChoiceField(choices=ACTIONS, required=False)
    object_type = serializers.CharField(
        max_length=50, required=False, help_text="e.g. api_key, application, campaign."
    )
    object_id = serializers.CharField(max_length=100, required=False)
    since = AwareDateTimeField(required=False, help_text="Rows at or after this time.")
    until = AwareDateTimeField(required=False, help_text="Rows before this time.")

    def validate_object_type(self, value: str) -> str:
        return _stored_text(value, "object_type")

    def validate_object_id(self, value: str) -> str:
        return _stored_text(value, "object_id")


class AuditLogPagination(ResultsCursorPagination):
    ordering = ("-at", "-id")


class AuditLogApi(APIView):
    pagination_class = AuditLogPagination

    @extend_schema(
        operation_id="audit_log_list",
        parameters=[AuditLogFilters],
        responses=AuditEntryOutput(many=True),
        description="Who did what to the application, newest first: keys created or revoked, "
        "credentials changed, campaigns executed, paused, resumed or cancelled, users erased, "
        "messages retried or cancelled by hand, settings changed. Times with a zone.",
    )
    def get(self, request: Request) -> Response:
        filters = AuditLogFilters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        entries = audit_entry_list(
            application=request.auth.application, filters=filters.validated_data
        )
        return paginated(request, self, entries, AuditEntryOutput)
