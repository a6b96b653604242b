"""/healthz, /readyz and /metrics: plain Django views outside the API (no API key, no
throttling), for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from core.api import error_body

from . import health, metrics_export


@require_GET
def healthz(request):
    """The process serves requests; nothing else is checked."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    """200 when the database, Redis and the broker answer and a worker reports; else 503."""
    checks = health.readiness()
    ready = all(value == health.OK for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


def _authorized(request) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@require_GET
def metrics(request):
    """Prometheus text of every process (see operations/metrics_export.py); with
    METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`."""
    if not _authorized(request):
        response = JsonResponse(
            error_body("authentication_failed", "A valid metrics bearer token is required."),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_export.render()
    return HttpResponse(body, content_type=content_type)
