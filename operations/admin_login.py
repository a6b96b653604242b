"""The admin login's lockouts (django-axes, settings AXES_*): the client address behind the
proxies, and the page a locked-out login gets. Only the admin has passwords; the API uses keys."""

from __future__ import annotations

import ipaddress
import math

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


def _address(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The address the outermost of TRUSTED_PROXY_COUNT proxies saw (each appends the address
    it received from to X-Forwarded-For, so what a client wrote there itself stays to the left
    of them); with no proxies, or no usable entry, the connection's own address."""
    remote = request.META.get("REMOTE_ADDR")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [
        part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
    ]
    if not forwarded:
        return remote
    return _address(forwarded[-min(count, len(forwarded))]) or remote


def lockout_response(request: HttpRequest, original_response=None, credentials=None):
    """429 with the admin's look and a Retry-After of the cool-off."""
    cooloff = settings.AXES_COOLOFF_TIME.total_seconds()
    context = {
        **admin.site.each_context(request),
        "title": "Login locked",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "username": (credentials or {}).get("username") or request.POST.get("username", ""),
        "cooloff_minutes": math.ceil(cooloff / 60),
    }
    response: HttpResponse = TemplateResponse(
        request, "operations/login_locked.html", context, status=429
    )
    response["Retry-After"] = str(math.ceil(cooloff))
    return response.render()
