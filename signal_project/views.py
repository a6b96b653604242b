"""Django's last-resort error view, for what no view or middleware turned into a response."""

from __future__ import annotations

import sys

from django.http import HttpResponse
from django.views import defaults

from core.api import API_PREFIX, database_unavailable_error, service_unavailable_response
from core.db import database_unavailable


def server_error(request):
    """`handler500`: a 503 with Retry-After while the database cannot be reached (the API's
    error shape under /api/, a plain page elsewhere, e.g. the admin); Django's 500 page
    otherwise."""
    exc = sys.exception()
    if not database_unavailable(exc):
        return defaults.server_error(request)
    error = database_unavailable_error(exc)
    if request.path.startswith(API_PREFIX):
        return service_unavailable_response(error)
    response = HttpResponse(
        f"503 Service Unavailable\n\n{error.message} (Retry in {error.retry_after} s.)\n",
        status=503,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(error.retry_after)
    return response
