"""What each provider error means for the pipeline, as data, and the classifiers using it.

Every APNs reason and FCM v1 error code maps to three flags: `permanent` (retrying the same
message cannot help), `token_invalid` (the device token is dead: disable the subscription) and
`credential_rejected` (our provider credential was refused: renew it and retry once).
`ERRORS.md` next to this module is generated from these tables and the other channels' by
`adapters.errors_doc`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import SendResult


@dataclass(frozen=True, slots=True)
class ErrorClass:
    """How one provider error code is handled."""

    provider: str  # "APNs", "FCM" or "local"
    code: str
    status: int | None
    permanent: bool
    token_invalid: bool
    credential_rejected: bool
    meaning: str


def _table(provider: str, rows: list[tuple]) -> dict[str, ErrorClass]:
    return {row[0]: ErrorClass(provider, *row) for row in rows}


# (code, HTTP status, permanent, token_invalid, credential_rejected, meaning), in Apple's order.
# A 400 is permanent: the same request fails the same way. Credential and configuration
# problems (403) are temporary: the operator can fix them and the message is still good.
APNS_ERRORS: dict[str, ErrorClass] = _table(
    "APNs",
    [
        ("BadCollapseId", 400, True, False, False, "apns-collapse-id exceeds 64 bytes"),
        ("BadDeviceToken", 400, True, True, False, "the device token is malformed or wrong env"),
        ("BadExpirationDate", 400, True, False, False, "apns-expiration is bad"),
        ("BadMessageId", 400, True, False, False, "apns-id is bad"),
        ("BadPriority", 400, True, False, False, "apns-priority is bad"),
        ("BadTopic", 400, True, False, False, "apns-topic is bad"),
        ("DeviceTokenNotForTopic", 400, True, True, False, "the token belongs to another topic"),
        ("DuplicateHeaders", 400, True, False, False, "a header was repeated"),
        ("IdleTimeout", 400, False, False, False, "the connection idled out; resend"),
        ("InvalidPushType", 400, True, False, False, "apns-push-type is bad"),
        ("MissingDeviceToken", 400, True, False, False, "no device token in the path"),
        ("MissingTopic", 400, True, False, False, "apns-topic is required and missing"),
        ("PayloadEmpty", 400, True, False, False, "the payload is empty"),
        ("TopicDisallowed", 400, True, False, False, "pushing to this topic is not allowed"),
        ("BadCertificate", 403, False, False, False, "the client certificate is bad"),
        ("BadCertificateEnvironment", 403, False, False, False, "certificate for other env"),
        ("ExpiredProviderToken", 403, False, False, True, "provider JWT older than 1 hour"),
        ("Forbidden", 403, False, False, False, "the action is not allowed"),
        ("InvalidProviderToken", 403, False, False, True, "provider JWT invalid or unknown kid"),
        ("MissingProviderToken", 403, False, False, False, "no certificate and no JWT"),
        ("UnrelatedKeyIdInToken", 403, False, False, False, "key id does not match the team"),
        ("BadEnvironmentKeyIdInToken", 403, False, False, False, "key is for the other env"),
        ("BadPath", 404, True, False, False, "the request path is bad"),
        ("MethodNotAllowed", 405, True, False, False, "only POST is supported"),
        ("ExpiredToken", 410, True, True, False, "the device token has expired"),
        ("Unregistered", 410, True, True, False, "the device token is no longer active"),
        ("PayloadTooLarge", 413, True, False, False, "payload over 4096 bytes"),
        ("TooManyProviderTokenUpdates", 429, False, False, False, "JWT renewed too often"),
        ("TooManyRequests", 429, False, False, False, "too many requests to the same token"),
        ("InternalServerError", 500, False, False, False, "Apple internal error"),
        ("ServiceUnavailable", 503, False, False, False, "APNs unavailable"),
        ("Shutdown", 503, False, False, False, "the APNs server is shutting down"),
    ],
)

# FCM v1 `FcmError.errorCode`s, then the Google status names a bare 401/403 carries.
FCM_ERRORS: dict[str, ErrorClass] = _table(
    "FCM",
    [
        ("UNSPECIFIED_ERROR", None, False, False, False, "no more information"),
        (
            "INVALID_ARGUMENT",
            400,
            True,
            False,
            False,
            "bad request; token_invalid only when it names the registration token",
        ),
        ("UNREGISTERED", 404, True, True, False, "the app instance was unregistered"),
        ("SENDER_ID_MISMATCH", 403, True, True, False, "token belongs to another sender"),
        ("QUOTA_EXCEEDED", 429, False, False, False, "sending limit exceeded"),
        ("UNAVAILABLE", 503, False, False, False, "FCM overloaded"),
        ("INTERNAL", 500, False, False, False, "FCM internal error"),
        ("THIRD_PARTY_AUTH_ERROR", 401, False, False, False, "APNs/web-push credential bad"),
        ("UNAUTHENTICATED", 401, False, False, True, "our OAuth access token was refused"),
        ("PERMISSION_DENIED", 403, False, False, False, "service account lacks permission"),
    ],
)

# Failures found on our side, before or instead of a provider answer.
LOCAL_ERRORS: dict[str, ErrorClass] = _table(
    "local",
    [
        ("payload_too_large", None, True, False, False, "payload over 4096 bytes; not sent"),
        ("network_error", None, False, False, False, "connection failed or was lost"),
        ("timeout", None, False, False, False, "no answer within the adapter's timeout"),
    ],
)

ALL_ERRORS: tuple[ErrorClass, ...] = (
    *APNS_ERRORS.values(),
    *FCM_ERRORS.values(),
    *LOCAL_ERRORS.values(),
)


def _result(
    message_id: str,
    error: ErrorClass,
    *,
    status: int | None,
    error_message: str = "",
    retry_after: float | None = None,
    latency_ms: float | None = None,
    token_invalid: bool | None = None,
) -> SendResult:
    return SendResult(
        message_id=message_id,
        ok=False,
        status_code=status,
        error_code=error.code,
        error_message=error_message or error.meaning,
        permanent=error.permanent,
        token_invalid=error.token_invalid if token_invalid is None else token_invalid,
        retry_after=retry_after,
        latency_ms=latency_ms,
    )


def _by_status(provider: str, code: str, status: int | None) -> ErrorClass:
    """A code missing from the table: temporary for 429 and 5xx, permanent for other 4xx."""
    permanent = status is not None and 400 <= status < 500 and status != 429
    return ErrorClass(provider, code, status, permanent, False, False, "unknown error")


def is_credential_rejected(result: SendResult) -> bool:
    """Whether the provider refused our credential (renew it and resend once)."""
    if result.ok or result.error_code is None:
        return False
    error = APNS_ERRORS.get(result.error_code) or FCM_ERRORS.get(result.error_code)
    return bool(error and error.credential_rejected)


def local_failure(
    message_id: str, code: str, error_message: str = "", *, latency_ms: float | None = None
) -> SendResult:
    """A failure on our side: `payload_too_large`, `network_error` or `timeout`."""
    return _result(
        message_id,
        LOCAL_ERRORS[code],
        status=None,
        error_message=error_message,
        latency_ms=latency_ms,
    )


def classify_apns(
    message_id: str,
    status: int,
    reason: str | None = None,
    *,
    provider_id: str | None = None,
    retry_after: float | None = None,
    latency_ms: float | None = None,
) -> SendResult:
    """The result of one APNs answer: its HTTP status and the `reason` of its JSON body."""
    if status == 200:
        return SendResult(
            message_id=message_id,
            ok=True,
            provider_id=provider_id,
            status_code=200,
            latency_ms=latency_ms,
        )
    code = reason or f"HTTP{status}"
    error = APNS_ERRORS.get(code) or _by_status("APNs", code, status)
    return _result(message_id, error, status=status, retry_after=retry_after, latency_ms=latency_ms)


def _names_the_token(error: Mapping[str, Any]) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token rather than the message."""
    for detail in error.get("details") or ():
        for violation in detail.get("fieldViolations") or ():
            field = str(violation.get("field", ""))
            if field == "message.token" or "registration token" in field.lower():
                return True
    text = str(error.get("message", "")).lower()
    return "registration token" in text or "message.token" in text


def classify_fcm(
    message_id: str,
    status: int,
    body: Mapping[str, Any] | None,
    *,
    retry_after: float | None = None,
    latency_ms: float | None = None,
) -> SendResult:
    """The result of one FCM v1 answer: its HTTP status and parsed JSON body (None if not JSON)."""
    body = body or {}
    if status == 200:
        return SendResult(
            message_id=message_id,
            ok=True,
            provider_id=body.get("name"),
            status_code=200,
            latency_ms=latency_ms,
        )
    error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
    code = None
    for detail in error.get("details") or ():
        if str(detail.get("@type", "")).endswith("google.firebase.fcm.v1.FcmError"):
            code = detail.get("errorCode")
    if status == 401 and code != "THIRD_PARTY_AUTH_ERROR":
        code = "UNAUTHENTICATED"
    code = code or error.get("status") or f"HTTP{status}"
    entry = FCM_ERRORS.get(code) or _by_status("FCM", code, status)
    token_invalid = None
    if code == "INVALID_ARGUMENT":
        token_invalid = _names_the_token(error)
    return _result(
        message_id,
        entry,
        status=status,
        error_message=str(error.get("message", "")),
        retry_after=retry_after,
        latency_ms=latency_ms,
        token_invalid=token_invalid,
    )


def parse_retry_after(value: str | bytes | None) -> float | None:
    """Seconds from a Retry-After header given in seconds; None when absent or a date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def parse_json_body(raw: bytes | str) -> dict[str, Any] | None:
    """A provider's JSON error body, or None when it is not a JSON object."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
