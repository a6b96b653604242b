"""List filters of the message log that stay cheap over millions of messages: none of them
reads the messages table to list its choices."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.core.cache import cache
from django.utils import timezone

from .models import ErrorRollup

ERROR_CODES_LISTED = 50
# The codes listed are read at most this often (per cache): the read scans a day of rollup
# rows (tens of milliseconds with many shards and codes).
ERROR_CODES_CACHE_SECONDS = 60


class ErrorCodeFilter(admin.SimpleListFilter):
    """By error code: the choices are the codes failed attempts came back with in the last
    24 hours (from the error rollup), plus any code given in the URL."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = cache.get_or_set(
            "admin:message-error-codes", recent_error_codes, ERROR_CODES_CACHE_SECONDS
        )
        codes = list(codes)
        value = self.value()
        if value and value not in codes:
            codes.append(value)
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(error_code=value) if value is not None else queryset


def recent_error_codes() -> list[str]:
    since = timezone.now() - timedelta(days=1)
    return list(
        ErrorRollup.objects.filter(minute__gte=since)
        .values_list("error_code", flat=True)
        .order_by()
        .distinct()[:ERROR_CODES_LISTED]
    )
