"""`X-API-Key` authentication and the two scopes."""

from __future__ import annotations

import structlog
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from accounts.models import ApiKey
from accounts.selectors import api_key_get_active
from accounts.services import api_key_touch

HEADER = "HTTP_X_API_KEY"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Sets request.auth (and request.user) to the active ApiKey the header names, and binds
    its prefix as `api_key` for the request's log lines (core.logging; the request's context
    is cleared by core.middleware). The raw key is never logged: an unknown one binds
    nothing."""

    def authenticate(self, request):
        raw = request.META.get(HEADER)
        if not raw:
            return None
        api_key = api_key_get_active(raw=raw)
        if api_key is None:
            raise exceptions.AuthenticationFailed("The API key is unknown or revoked.")
        structlog.contextvars.bind_contextvars(api_key=api_key.prefix)
        api_key_touch(api_key=api_key)
        return api_key, api_key

    def authenticate_header(self, request):
        return "X-API-Key"


class IsServerKey(permissions.BasePermission):
    """The default: server keys only; a client key gets 403."""

    message = "This endpoint needs a server key; client keys may not call it."

    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey):
            return False
        return request.auth.scope == ApiKey.Scope.SERVER


class IsServerOrClientKey(permissions.BasePermission):
    """Endpoints the contract opens to client keys shipped in mobile apps."""

    def has_permission(self, request, view):
        return isinstance(request.auth, ApiKey)


class IsServerKeyOrClientKeyUnderIdentity(permissions.BasePermission):
    """Server keys; client keys only of an application with identity verification on, whose
    views then check the user's X-User-Hash (accounts.identity)."""

    message = (
        "This endpoint needs a server key, or a client key of an application with identity "
        "verification on."
    )

    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey):
            return False
        return (
            request.auth.scope == ApiKey.Scope.SERVER
            or request.auth.application.identity_verification
        )


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "A server key (full access) or a client key (subscriptions, "
            "identify/logout, message status reports, the current application, the in-app "
            "inbox, and a user's preferences under identity verification only).",
        }
