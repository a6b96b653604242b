"""The reference inbox client: one page (a template and a plain JavaScript file, no build step,
nothing from a CDN) that shows a subscription's inbox with its bell count and keeps it live over
the Server-Sent Events stream. Development only: served when DEBUG or INBOX_DEMO is on, else 404.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


def enabled() -> bool:
    return bool(settings.DEBUG or getattr(settings, "INBOX_DEMO", False))


@require_GET
def inbox_demo(request: HttpRequest) -> HttpResponse:
    if not enabled():
        raise Http404("The inbox demo is served in development only (DEBUG or INBOX_DEMO).")
    prefill = {
        name: request.GET.get(name, "") for name in ("subscription_id", "api_key", "user_hash")
    }
    return render(
        request,
        "messaging/inbox_demo.html",
        {
            "config": {
                # Empty: the stream is on the page's own origin (behind a proxy that routes
                # /api/v1/inbox/stream to the ASGI process, or the ASGI process itself).
                "stream_url": (getattr(settings, "INBOX_STREAM_URL", "") or "").rstrip("/"),
                "api_url": "/api/v1",
                **prefill,
            }
        },
    )
