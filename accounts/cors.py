"""Which web pages may call the API from a browser (CORS): the origins an application lists
in `allowed_origins`, for calls with that application's client key. django-cors-headers asks
`cors_request_allowed` through its `check_request_enabled` signal (connected in
AccountsConfig.ready); the inbox's ASGI stream asks `origin_allowed` and `origin_listed`
itself and builds its headers with `response_headers` and `preflight_headers`.

A preflight (OPTIONS) carries no X-API-Key, so it is answered for an origin that any
application lists; the call that follows gets Access-Control-Allow-Origin only when its client
key's application lists the origin. Server keys never do: a browser must not hold one."""

from __future__ import annotations

import re
import time

from corsheaders.conf import conf
from django.conf import settings
from django.db import DatabaseError

from .models import ApiKey, Application
from .selectors import api_key_get_active
from .services import origin_clean

_API_KEY_META = "HTTP_X_API_KEY"

# (monotonic expiry, origins): swapped whole, so threads never see half of an update.
_listed: tuple[float, frozenset[str]] = (0.0, frozenset())


def _clean(origin: str | None) -> str | None:
    if not origin:
        return None
    try:
        return origin_clean(origin)
    except ValueError:  # "null" (a sandboxed page, a file), or anything else not an origin
        return None


def listed_origins() -> frozenset[str]:
    """Every origin some application lists, read again after CORS_ORIGINS_CACHE_SECONDS."""
    global _listed
    expires, origins = _listed
    now = time.monotonic()
    if now < expires:
        return origins
    origins = frozenset(
        origin
        for listed in Application.objects.exclude(allowed_origins=[]).values_list(
            "allowed_origins", flat=True
        )
        for origin in listed or ()
    )
    _listed = (now + settings.CORS_ORIGINS_CACHE_SECONDS, origins)
    return origins


def listed_origins_forget() -> None:
    """The next preflight reads the origins again (tests; a process that just changed them)."""
    global _listed
    _listed = (0.0, frozenset())


def origin_listed(origin: str | None) -> bool:
    """A preflight's answer: some application lists the origin."""
    clean = _clean(origin)
    return clean is not None and clean in listed_origins()


def origin_allowed(*, api_key: ApiKey | None, origin: str | None) -> bool:
    """A call's answer: the key is an active client key whose application lists the origin."""
    if api_key is None or api_key.scope != ApiKey.Scope.CLIENT or not api_key.is_active:
        return False
    clean = _clean(origin)
    return clean is not None and clean in (api_key.application.allowed_origins or ())


def _is_preflight(request) -> bool:
    return request.method == "OPTIONS" and "access-control-request-method" in request.headers


def _api_key_of(request) -> ApiKey | None:
    """The key DRF authenticated the request with; for a request DRF never authenticated (an
    unknown path), the key its header names."""
    if hasattr(request, "auth"):  # DRF sets it on the Django request too, None when refused
        return request.auth if isinstance(request.auth, ApiKey) else None
    raw = request.META.get(_API_KEY_META)
    return api_key_get_active(raw=raw) if raw else None


def cors_request_allowed(sender, *, request, **kwargs) -> bool:
    """django-cors-headers' check_request_enabled: whether this API request's origin gets
    Access-Control-Allow-Origin. Nothing outside the API (CORS_URLS_REGEX) ever does."""
    if not re.match(conf.CORS_URLS_REGEX, request.path_info):
        return False
    origin = request.headers.get("origin")
    if not origin:
        return False
    try:
        if _is_preflight(request):
            return origin_listed(origin)
        return origin_allowed(api_key=_api_key_of(request), origin=origin)
    except DatabaseError:  # the database is away: the answer (a 503) goes without CORS
        return False


def response_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """The CORS headers of an allowed call's response, as the middleware writes them (for the
    ASGI stream, which Django's middleware does not see)."""
    headers = [(b"access-control-allow-origin", origin.encode("latin-1"))]
    if conf.CORS_EXPOSE_HEADERS:
        headers.append(
            (b"access-control-expose-headers", ", ".join(conf.CORS_EXPOSE_HEADERS).encode())
        )
    return headers


def preflight_headers(origin: str, *, methods: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """The CORS headers of an allowed preflight's answer."""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ", ".join(methods).encode()),
        (b"access-control-allow-headers", ", ".join(conf.CORS_ALLOW_HEADERS).encode()),
        (b"access-control-max-age", str(conf.CORS_PREFLIGHT_MAX_AGE).encode()),
    ]
