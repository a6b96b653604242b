"""/healthz, /readyz and /metrics: plain Django views outside the API (no API key, no
throttling), for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from core.api import error_body

from . import health, metrics_export

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    """The process serves requests; nothing else is checked."""
    return JsonResponse({"status": "ok"})


_last_failures: dict[str, str] = {}


@require_GET
def readyz(request):
    """200 when the database, Redis and the broker answer and a worker reports; else 503.

    Polled every few seconds by load balancers: a change of what fails is logged once (not
    each 503, which Django would log as an error every time)."""
    global _last_failures
    checks = health.readiness()
    failures = {name: value for name, value in checks.items() if value != health.OK}
    if failures != _last_failures:
        if failures:
            logger.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in failures.items()))
        else:
            logger.info("ready again")
        _last_failures = failures
    response = JsonResponse(
        {"status": "unavailable" if failures else "ok", "checks": checks},
        status=503 if failures else 200,
    )
    response._has_been_logged = True  # django.utils.log.log_response: logged above
    return response


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
