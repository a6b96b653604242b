"""The OpenAPI document as the API behaves: the error responses each operation can give, in the
one error shape; strict request bodies; paginated lists; links between operations.

`SignalAutoSchema` is REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS and `add_links` a
SPECTACULAR_SETTINGS postprocessing hook. Views declare only the errors particular to them
(`error_response`); the ones every operation of a kind shares are added here.
"""

from __future__ import annotations

from drf_spectacular.extensions import (
    OpenApiFilterExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance, is_serializer
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from core import channels
from core.api import (
    ChannelPartField,
    ChannelPartsField,
    ResultsCursorPagination,
    StrictSerializer,
)
from core.validation import BLANK, NON_BLANK, WHITESPACE  # noqa: F401 (importable from here)

ERROR_COMPONENT = "Error"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error response of the API has this shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "snake_case, e.g. authentication_failed, permission_denied, "
                    "not_found, validation_error, parse_error, invalid_transition, "
                    "rate_limited, quota_exceeded, idempotency_conflict, payload_too_large, "
                    "unsupported_media_type, service_unavailable.",
                },
                "message": {"type": "string", "description": "A sentence for people."},
                "details": {
                    "type": "object",
                    "description": "For validation_error: field -> list of messages "
                    "(nested for nested fields; `non_field_errors` for the body as a whole).",
                },
            },
        }
    },
}

RETRY_AFTER = {
    "Retry-After": {
        "required": True,
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


# --- Channel parts ------------------------------------------------------------------------------


def part_schema(name: str, *, templated: bool = False) -> dict:
    """The JSON Schema of one channel part, from its fields (core.channels.PART_FIELDS: each
    field's schema is written with its check). `templated`: a template's part, whose URLs may
    hold `{{ }}` variables (checked once rendered)."""
    return {
        "type": "object",
        "description": f"The {name} part: what {channels.CHANNEL_OF_PART[name]} messages send "
        "instead of or besides title/body/data; every field optional.",
        "properties": {
            key: field.json_schema(templated=templated)
            for key, field in channels.PART_FIELDS[name].items()
        },
        "additionalProperties": False,
    }


def parts_schema(*, templated: bool = False) -> dict:
    """The schema of `{"email": {...}, "sms": {...}}`: the parts given, each optional."""
    return {
        "type": "object",
        "properties": {
            name: part_schema(name, templated=templated) for name in channels.PART_NAMES
        },
        "additionalProperties": False,
    }


class ChannelPartFieldSchema(OpenApiSerializerFieldExtension):
    target_class = ChannelPartField

    def map_serializer_field(self, auto_schema, direction):
        return part_schema(self.target.part, templated=self.target.templated)


class ChannelPartsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = ChannelPartsField

    def map_serializer_field(self, auto_schema, direction):
        return parts_schema()


class WithChannelParts(OpenApiSerializerExtension):
    """The response schema of `target_class` plus the channel parts its to_representation
    adds as top-level keys (each optional: only the ones the object has)."""

    templated = False

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        properties = {
            **schema.get("properties", {}),
            **{name: part_schema(name, templated=self.templated) for name in channels.PART_NAMES},
        }
        return {**schema, "properties": properties}


def error_response(description: str) -> OpenApiResponse:
    """An error response of one operation, for `extend_schema(responses={404: ...})`."""
    return OpenApiResponse(response=ERROR_REF, description=description)


def _error(description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}
    if headers:
        response["headers"] = headers
    return response


class SignalAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus what the API kit in core.api does for every
    view: errors in one shape, unknown fields refused, trimmed strings."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        registry.register_on_missing(
            ResolvedComponent(
                name=ERROR_COMPONENT,
                type=ResolvedComponent.SCHEMA,
                object=ERROR_COMPONENT,
                schema=ERROR_SCHEMA,
            )
        )
        responses = operation["responses"]
        for status, response in self._shared_errors(operation).items():
            responses.setdefault(status, response)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _shared_errors(self, operation: dict) -> dict[str, dict]:
        """The error statuses that follow from the operation's shape and the view's
        authentication, permissions, parsers and throttles."""
        parameters = operation.get("parameters", [])
        located = {p["in"] for p in parameters}
        has_body = "requestBody" in operation
        errors: dict[str, dict] = {}
        if has_body or "query" in located:
            errors["400"] = _error(
                "validation_error: a field or query parameter is missing, unknown or invalid "
                "(details: field -> messages); parse_error: the body is not JSON."
            )
        if operation.get("security"):
            errors["401"] = _error(
                "authentication_failed: the X-API-Key header is missing, unknown or revoked."
            )
        denials = [
            str(permission.message)
            for permission in self.view.get_permissions()
            if getattr(permission, "message", None)
        ]
        if denials:
            errors["403"] = _error(f"permission_denied: {' '.join(denials)}")
        if "path" in located:
            errors["404"] = _error("not_found: no such object in this application.")
        errors["414"] = _error("uri_too_long: the URL (path and query) is longer than the limit.")
        if has_body:
            errors["413"] = _error("payload_too_large: the body is larger than the limit.")
            errors["415"] = _error("unsupported_media_type: the body is not application/json.")
        if any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in parameters):
            errors["422"] = _error(
                "idempotency_conflict: this Idempotency-Key was used with a different body "
                "within 24 h."
            )
        if self.view.get_throttles():
            errors["429"] = _error(
                "rate_limited: more requests per second than the key may make; "
                "quota_exceeded: the application's message quota is used up.",
                RETRY_AFTER,
            )
        errors["503"] = _error(
            "service_unavailable: the database cannot be reached at the moment.", RETRY_AFTER
        )
        return errors

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        serializer = force_instance(serializer)
        if is_serializer(serializer) and not required:
            # drf-spectacular looks for required fields in the component, which a schema of
            # oneOf variants does not have at its top.
            rules = OpenApiSerializerExtension.get_match(serializer)
            required = (isinstance(rules, RequestRules) and rules.body_required) or any(
                field.required and not field.read_only
                for field in getattr(serializer, "fields", {}).values()
            )
        return schema, required

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if type(serializer).__doc__ is None:
            # drf-spectacular would describe it with a base class's docstring.
            schema.pop("description", None)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(schema, dict)
            and schema.get("type") == "string"
            and type(field) is serializers.CharField
            and field.trim_whitespace
            and not field.allow_blank
            and "pattern" not in schema
        ):
            schema["pattern"] = NON_BLANK
        return schema


class ResultsCursorPaginationScheme(OpenApiFilterExtension):
    """`cursor` and `limit` of every list, as the paginator checks them."""

    target_class = ResultsCursorPagination
    match_subclasses = True

    def get_schema_operation_parameters(self, auto_schema, *args, **kwargs):
        paginator = self.target
        return [
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "The cursor of a `next` link, unchanged (any other is 400).",
                "schema": {"type": "string", "minLength": 1, "pattern": NON_BLANK},
            },
            {
                "name": paginator.page_size_query_param,
                "in": "query",
                "required": False,
                "description": f"Items per page (default {paginator.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": paginator.max_page_size},
            },
        ]


class RequestRules(OpenApiSerializerExtension):
    """The request schema of `target_class` with the JSON Schema keywords of `rules` added:
    for what its validate() checks across fields (one of several fields, not both).
    `body_required`: the rules refuse an empty body, though no single field is required."""

    rules: dict = {}
    body_required = False

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema = {**schema, **self.rules}
        return schema


def _link(operation_id: str, description: str, **parameters: str) -> dict:
    return {"operationId": operation_id, "description": description, "parameters": parameters}


def _body_link(operation_id: str, description: str, body: dict) -> dict:
    return {"operationId": operation_id, "description": description, "requestBody": body}


# operationId -> its success status -> links to operations on the object it returned.
_ID = "$response.body#/id"
_LINKS = {
    "subscriptions_create": {
        status: {
            "GetSubscription": _link(
                "subscriptions_retrieve", "The subscription", subscription_id=_ID
            ),
            "UpdateSubscription": _link("subscriptions_update", "Change it", subscription_id=_ID),
            "DeleteSubscription": _link("subscriptions_destroy", "Delete it", subscription_id=_ID),
            "SendMessage": _body_link(
                "messages_create", "Send it a message", {"subscription_id": _ID, "title": "Hi"}
            ),
            "IdentifyUser": _body_link(
                "users_identify",
                "Tie it to a user",
                {"subscription_id": _ID, "external_user_id": "user-1"},
            ),
            "LogoutUser": _body_link(
                "users_logout", "Untie it from its user", {"subscription_id": _ID}
            ),
        }
        for status in ("200", "201")
    },
    "users_identify": {
        "200": {
            "ListUserSubscriptions": _link(
                "users_subscriptions_list",
                "The user's subscriptions",
                external_user_id="$response.body#/external_user_id",
            ),
            "GetUser": _link(
                "users_retrieve", "The user", external_user_id="$response.body#/external_user_id"
            ),
        }
    },
    "users_update": {
        "200": {
            name: _link(
                operation_id, description, external_user_id="$response.body#/external_user_id"
            )
            for name, operation_id, description in (
                ("GetUser", "users_retrieve", "The user"),
                ("ListUserSubscriptions", "users_subscriptions_list", "The user's subscriptions"),
                ("ExportUser", "users_export", "Everything stored about the user"),
                ("EraseUser", "users_destroy", "Erase the user"),
            )
        }
    },
    "templates_create": {
        "201": {
            "GetTemplate": _link(
                "templates_retrieve",
                "The version just written",
                template_id=_ID,
                version="$response.body#/version",
            ),
            "UpdateTemplate": _link("templates_update", "Change it", template_id=_ID),
            "RenderTemplate": {
                **_link("templates_render", "Render the version just written", template_id=_ID),
                "requestBody": {"variables": {}, "version": "$response.body#/version"},
            },
            "DeleteTemplate": _link("templates_destroy", "Delete it", template_id=_ID),
        }
    },
    "campaigns_create": {
        "201": {
            name: _link(operation_id, description, campaign_id=_ID)
            for name, operation_id, description in (
                ("GetCampaign", "campaigns_retrieve", "The campaign"),
                ("UpdateCampaign", "campaigns_update", "Change it"),
                ("PreviewCampaign", "campaigns_preview", "Its audience"),
                ("ExecuteCampaign", "campaigns_execute", "Run it"),
                ("PauseCampaign", "campaigns_pause", "Pause it while it runs"),
                ("ResumeCampaign", "campaigns_resume", "Resume it once paused"),
                ("CancelCampaign", "campaigns_cancel", "Cancel it"),
                ("ListCampaignRuns", "campaigns_runs_list", "Its runs"),
            )
        }
    },
    "messages_create": {
        "202": {
            "GetMessage": _link(
                "messages_retrieve", "The first message", message_id="$response.body#/messages/0/id"
            ),
            "ReportMessageStatus": _link(
                "messages_status_update",
                "Report its status",
                message_id="$response.body#/messages/0/id",
            ),
            "RetryMessage": _link(
                "messages_retry",
                "Send it again once it failed",
                message_id="$response.body#/messages/0/id",
            ),
        }
    },
}


def add_links(result, generator, request, public):
    """POSTPROCESSING_HOOKS entry: OpenAPI links from the operations that create an object to
    the ones that use its id (clients and stateful test tools follow them)."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            links_by_status = _LINKS.get(operation.get("operationId"), {})
            for status, links in links_by_status.items():
                response = operation.get("responses", {}).get(status)
                if response is not None:
                    response["links"] = links
    return result
