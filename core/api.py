"""What every API endpoint shares: the one error shape, bounded JSON bodies, strict input,
fields that store only what PostgreSQL can hold, and pagination.

Every error leaves as `{"error": {"code", "message", "details"}}`, whether DRF, Django or our
own services raised it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import zoneinfo
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from core.channels import PART_NAMES, part_check
from core.db import database_unavailable, retry_after_seconds
from core.exceptions import (
    ApplicationError,
    AuthenticationFailed,
    Conflict,
    IdempotencyConflict,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RetryLater,
    ServiceUnavailable,
    ValidationFailed,
)
from core.validation import (
    MAX_JSON_DEPTH,
    InputInvalid,
    check_json,
    check_text,
    json_depth_exceeds,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


# The HTTP status of each domain error (core.exceptions): the one place that knows them.
# A subclass takes its nearest listed ancestor's.
STATUS_OF: dict[type[ApplicationError], int] = {
    ApplicationError: 400,
    AuthenticationFailed: 401,
    PayloadTooLarge: 413,
    NotFound: 404,
    InvalidTransition: 409,
    Conflict: 409,
    IdempotencyConflict: 422,
    QuotaExceeded: 429,
    ServiceUnavailable: 503,
}


def status_of(exc: ApplicationError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def database_unavailable_error(exc: BaseException) -> ServiceUnavailable:
    """The 503 a request gets while the database cannot be reached (logged without a
    traceback: during an outage every request would print one)."""
    logger.warning("Database unavailable: %s: %s", type(exc).__name__, exc)
    return ServiceUnavailable(retry_after=retry_after_seconds())


_DRF_CODES: list[tuple[type[Exception], str, str]] = [
    (exceptions.NotAuthenticated, "authentication_failed", "A valid X-API-Key header is required."),
    (exceptions.AuthenticationFailed, "authentication_failed", ""),
    (exceptions.PermissionDenied, "permission_denied", ""),
    (exceptions.NotFound, "not_found", "Not found."),
    (exceptions.MethodNotAllowed, "method_not_allowed", ""),
    (exceptions.NotAcceptable, "not_acceptable", ""),
    (exceptions.UnsupportedMediaType, "unsupported_media_type", ""),
    (exceptions.Throttled, "rate_limited", ""),
    (exceptions.ParseError, "parse_error", ""),
    (exceptions.ValidationError, "validation_error", "The request has invalid fields."),
]


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _validation_details(detail) -> dict:
    """DRF's nested detail -> {field: [messages]}; non-field errors under `non_field_errors`."""
    if isinstance(detail, dict):
        return {
            key: value if isinstance(value, list | dict) else [str(value)]
            for key, value in detail.items()
        }
    if isinstance(detail, list):
        return {"non_field_errors": [str(item) for item in detail]}
    return {"non_field_errors": [str(detail)]}


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every exception becomes the contract's error shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif database_unavailable(exc):
        exc = database_unavailable_error(exc)
    elif isinstance(exc, InputInvalid):
        exc = ValidationFailed(details=exc.errors)
    headers = {}
    if isinstance(exc, ApplicationError):
        body = error_body(exc.code, exc.message, exc.details)
        if isinstance(exc, RetryLater):
            headers["Retry-After"] = str(exc.retry_after)
        return Response(body, status=status_of(exc), headers=headers)
    if isinstance(exc, exceptions.APIException):
        code, message = "error", str(exc.detail)
        for cls, known_code, default_message in _DRF_CODES:
            if isinstance(exc, cls):
                code, message = known_code, default_message or message
                break
        details = {}
        if isinstance(exc, exceptions.ValidationError):
            details = _validation_details(exc.detail)
        if isinstance(exc, exceptions.Throttled):
            wait = math.ceil(exc.wait or 1)
            headers["Retry-After"] = str(wait)
            message = f"Too many requests for this API key; retry in {wait} s."
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        return Response(error_body(code, message, details), status=exc.status_code, headers=headers)
    logger.exception("Unhandled error in %s", context.get("view"))
    return Response(
        error_body("internal_error", "An internal error occurred; it has been logged."),
        status=500,
    )


class ApiErrorMiddleware:
    """Gives /api/ responses that DRF never saw (unknown paths, oversize bodies, crashes) the
    contract's error shape."""

    _DEFAULTS = {
        400: ("bad_request", "The request is invalid."),
        414: ("uri_too_long", "The request's URL is longer than the limit."),
        404: ("not_found", "Not found."),
        405: ("method_not_allowed", "Method not allowed."),
        413: ("payload_too_large", "The request body is larger than the limit."),
        500: ("internal_error", "An internal error occurred; it has been logged."),
        503: ("service_unavailable", ServiceUnavailable.default_message),
    }

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        limit = settings.API_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return self._error(413, f"The request body is larger than {limit} bytes.")
        url_limit = settings.API_MAX_URL_BYTES
        if len(request.META.get("PATH_INFO", "")) + len(request.META.get("QUERY_STRING", "")) > (
            url_limit
        ):
            return self._error(
                414, f"The URL (path and query string) is longer than {url_limit} bytes."
            )
        response = self.get_response(request)
        if response.status_code >= 400 and "json" not in response.get("Content-Type", ""):
            code, message = self._DEFAULTS.get(response.status_code, ("error", "Request failed."))
            return self._error(response.status_code, message, code)
        return response

    def process_exception(self, request, exc):
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exc, Http404):
            return self._error(404, "Not found.")
        if database_unavailable(exc):
            return service_unavailable_response(database_unavailable_error(exc))
        logger.exception("Unhandled error at %s", request.path)
        return self._error(500, self._DEFAULTS[500][1])

    def _error(self, status: int, message: str, code: str | None = None) -> JsonResponse:
        code = code or self._DEFAULTS.get(status, ("error",))[0]
        return JsonResponse(error_body(code, message), status=status)


def service_unavailable_response(exc: ServiceUnavailable) -> JsonResponse:
    """The error shape of a 503, with its Retry-After, outside DRF."""
    response = JsonResponse(error_body(exc.code, exc.message, exc.details), status=503)
    response["Retry-After"] = str(exc.retry_after)
    return response


MAX_BODY_DEPTH = 64  # nested objects/arrays in a request body


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is out of range")
    return value


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {duplicate!r} appears twice in one object")
    return value


# JSON as RFC 8259 has it: no NaN or Infinity (Python's json accepts them, PostgreSQL does
# not), no number that overflows a double, no key twice in one object (parsers differ on
# which value wins).
_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
    object_pairs_hook=_object_without_duplicates,
)


class BoundedJSONParser(JSONParser):
    """JSON bodies of at most API_MAX_BODY_BYTES (also when no Content-Length was sent),
    nested at most MAX_BODY_DEPTH levels, strictly JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", "utf-8")
        too_deep = exceptions.ParseError(
            f"The body is nested more than {MAX_BODY_DEPTH} levels deep."
        )
        try:
            data = _DECODER.decode(raw.decode(encoding))
        except RecursionError:
            raise too_deep from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from exc
        # Fewer brackets than the limit cannot nest deeper (the usual body: no walk at all).
        if raw.count(b"[") + raw.count(b"{") > MAX_BODY_DEPTH and json_depth_exceeds(
            data, MAX_BODY_DEPTH
        ):
            raise too_deep
        return data


def _json_type_error(field: serializers.Field, value) -> str | None:
    """Why a value parsed from JSON is not of the field's JSON type, or None. DRF's fields
    coerce (1 -> "1", "5" -> 5, 0 -> False, an integer -> a UUID); a JSON body must say what
    it means."""
    if value is None:
        return None  # the field's allow_null decides
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be a JSON boolean."
    if isinstance(field, serializers.IntegerField):
        is_integer = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return None if is_integer and not isinstance(value, bool) else "Must be a JSON integer."
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return None if is_number else "Must be a JSON number."
    if isinstance(
        field,
        serializers.CharField
        | serializers.ChoiceField
        | serializers.UUIDField
        | serializers.DateTimeField
        | serializers.DateField,
    ):
        return None if isinstance(value, str) else "Must be a JSON string."
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        for index, item in enumerate(value):
            if problem := _json_type_error(field.child, item):
                return f"Item {index}: {problem}"
    if isinstance(field, serializers.DictField) and isinstance(value, dict):
        for key, item in value.items():
            if problem := _json_type_error(field.child, item):
                return f"{key!r}: {problem}"
    return None


def _paths_lifted(detail):
    """A field's errors that already name their full path (`{"email": {"email.subject":
    [...]}}`) moved up to the top (`{"email.subject": [...]}`); others stay as they are."""
    if not isinstance(detail, dict):
        return detail
    lifted = {}
    for name, errors in detail.items():
        if (
            isinstance(errors, dict)
            and errors
            and all(isinstance(key, str) and key.startswith(f"{name}.") for key in errors)
        ):
            lifted.update(errors)
        else:
            lifted[name] = errors
    return lifted


class StrictSerializer(serializers.Serializer):
    """An input serializer for JSON bodies: it rejects fields it does not know and values of
    another JSON type than the field's (no coercion of numbers to strings and the like)."""

    json_types = True

    def to_internal_value(self, data):
        if isinstance(data, dict):
            errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}
            if self.json_types:
                for name, field in self.fields.items():
                    if name in data and (problem := _json_type_error(field, data[name])):
                        errors[name] = [problem]
            if errors:
                raise serializers.ValidationError(errors)
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError(_paths_lifted(exc.detail)) from exc


class StrictQuerySerializer(StrictSerializer):
    """Query parameters: unknown ones are refused; values are strings that the fields
    convert."""

    json_types = False


def _invalid(exc: InputInvalid) -> serializers.ValidationError:
    return serializers.ValidationError(exc.message)


class JSONValueField(serializers.JSONField):
    """Any JSON value PostgreSQL can store (see validation.check_json), nested at most
    `max_depth` levels and at most `max_bytes` long."""

    def __init__(self, *, max_bytes: int | None = None, max_depth: int = MAX_JSON_DEPTH, **kw):
        self.max_bytes, self.max_depth = max_bytes, max_depth
        super().__init__(**kw)

    def to_internal_value(self, data):
        # JSONField's own check serializes the value once more; check_json walks it once.
        try:
            return check_json(
                data, field=self.field_name, max_depth=self.max_depth, max_bytes=self.max_bytes
            )
        except InputInvalid as exc:
            raise _invalid(exc) from exc


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(JSONValueField):
    """A JSON object PostgreSQL can store."""

    default_error_messages = {
        "not_a_dict": serializers.DictField.default_error_messages["not_a_dict"],
    }

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        return super().to_internal_value(data)


class ChannelPartField(serializers.JSONField):
    """One channel part (`email`, `sms`, ...; core.channels.part_check): an object of the
    part's fields within their limits. A problem is reported under its full path
    (`email.subject`). `templated`: a template's part, whose URLs may hold variables."""

    default_error_messages = {
        "not_a_dict": serializers.DictField.default_error_messages["not_a_dict"],
    }

    def __init__(self, *, part: str, templated: bool = False, **kwargs):
        self.part, self.templated = part, templated
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        try:
            return part_check(self.part, data, field=self.field_name, templated=self.templated)
        except InputInvalid as exc:
            if exc.field == self.field_name:
                raise serializers.ValidationError(exc.message) from exc
            raise serializers.ValidationError({exc.field: [exc.message]}) from exc


def channel_parts(*, templated: bool = False) -> type[serializers.Serializer]:
    """A serializer with each channel part (core.channels.PART_NAMES) as an optional top-level
    field; `templated`: a template's parts. Mixed into the input serializers that take
    content."""
    fields = {
        name: ChannelPartField(part=name, templated=templated, required=False)
        for name in PART_NAMES
    }
    return type("ChannelParts", (serializers.Serializer,), {"__module__": __name__, **fields})


class ChannelPartsInput(channel_parts()):
    """The optional channel parts of literal content, as top-level fields."""


class ChannelPartsField(serializers.JSONField):
    """Output: all the channel parts of some content, `{"email": {...}, "sms": {...}}`."""


def parts_of(attrs: dict) -> dict[str, dict]:
    """Pops the channel parts out of validated input: {"email": {...}, ...}, the given ones."""
    return {name: attrs.pop(name) for name in PART_NAMES if name in attrs}


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time that names its zone (`Z` or an offset), at most `max_ahead`
    from now when given."""

    default_error_messages = {
        "naive": "Give the time zone: an offset such as +09:00, or Z for UTC.",
        "too_far": "At most {days} days ahead (until {latest}).",
    }

    def __init__(self, *, max_ahead: timedelta | None = None, **kwargs):
        self.max_ahead = max_ahead
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value)
            except ValueError:  # well formed but impossible, e.g. month 13: DRF says so
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                self.fail("naive")
        moment = super().to_internal_value(value)
        if self.max_ahead is not None:
            latest = timezone.now() + self.max_ahead
            if moment > latest:
                self.fail(
                    "too_far",
                    days=self.max_ahead.days,
                    latest=latest.replace(microsecond=0).isoformat(),
                )
        return moment


class FieldsReusedPerThread:
    """For a hot input serializer: its bound fields are built once per thread and reused.

    DRF deep-copies every declared field for each serializer instance (~0.45 ms of the
    ~0.6 ms a POST /messages body takes to validate on the bench machine). Validation
    leaves fields unchanged, so one thread may reuse them; what a field reads from its root
    (`partial`, the context) is the same for every instance, and an instance that differs
    there gets fields of its own."""

    _per_thread = threading.local()

    @cached_property
    def fields(self):
        if self.partial or self._context:
            return super().fields
        cache = self._per_thread.__dict__.setdefault("fields", {})
        fields = cache.get(type(self))
        if fields is None:
            fields = cache[type(self)] = super().fields
        return fields


class PageQuery(StrictQuerySerializer):
    """The query string of a list without filters: only `cursor` and `limit`."""

    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class ResultsCursorPagination(CursorPagination):
    """`{"results": [...], "next": <url or null>}`, newest first, stable under inserts.
    A `limit` outside 1..1000 or a cursor that is not one of this list's `next` links is
    `400 validation_error`."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
    ordering = "-created_at"
    invalid_cursor = "Not a cursor of this list: pass the cursor of a `next` link unchanged."

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 7) or not (
            1 <= int(raw) <= self.max_page_size
        ):
            raise serializers.ValidationError(
                {"limit": [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = None
            valid = False
        else:
            valid = (
                cursor is None or cursor.position is None or self._position_valid(cursor.position)
            )
        if not valid:
            raise serializers.ValidationError({"cursor": [self.invalid_cursor]})
        return cursor

    def _position_valid(self, position: str) -> bool:
        """Whether a decoded position is a value of the ordering field (a forged one would
        reach the query and fail there)."""
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        try:
            field = self._model._meta.get_field(ordering.lstrip("-"))
        except FieldDoesNotExist:  # an annotation: nothing to check it against
            field = None
        try:
            check_text(position, field="cursor")
            if field is not None:
                field.to_python(position)
        except (InputInvalid, DjangoValidationError, ValueError, TypeError):
            return False
        return True

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": ["string", "null"], "format": "uri"},
            },
        }


def paginated(request, view, queryset, serializer_class) -> Response:
    """One page of a list endpoint, by the view's cursor pagination."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class TimeZoneField(serializers.CharField):
    """An IANA time zone name such as "Asia/Seoul" (or "" where blank is allowed)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise serializers.ValidationError(f"Unknown time zone {value!r}.") from exc
        return value


class TimeZoneFieldSchema(OpenApiSerializerFieldExtension):
    target_class = TimeZoneField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        names = sorted(zoneinfo.available_timezones())
        if self.target.allow_blank:
            names.append("")
        return {"type": "string", "enum": names, "description": "An IANA time zone name."}
