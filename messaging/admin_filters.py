"""List filters of the message log that stay cheap over millions of messages: none of them
reads the messages table to list its choices."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.utils import timezone

from .models import ErrorRollup

ERROR_CODES_LISTED = 50


class ErrorCodeFilter(admin.SimpleListFilter):
    """By error code: the choices are the codes providers returned in the last 7 days (from
    the error rollup, most frequent first), plus any code given in the URL."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        since = timezone.now() - timedelta(days=7)
        codes = list(
            ErrorRollup.objects.filter(minute__gte=since)
            .values_list("error_code", flat=True)
            .order_by()
            .distinct()[:ERROR_CODES_LISTED]
        )
        value = self.value()
        if value and value not in codes:
            codes.append(value)
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(error_code=value) if value is not None else queryset
