"""What a push service's answer means (`WEB_PUSH_ERRORS`, `classify_webpush`)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from adapters.base import SendResult
from adapters.errors import (
    ErrorClass,
    classified,
    error_table,
    failure,
    parse_retry_after,
)

# (code, HTTP status, permanent, token_invalid, credential_rejected, meaning). Push services
# answer 201 Created; a 404 or 410 means the browser's subscription is gone for good.
_ROWS = [
    ("HTTP400", 400, True, False, False, "the push service found the request malformed"),
    ("HTTP401", 401, True, False, False, "the VAPID authorization is missing or invalid"),
    (
        "HTTP403",
        403,
        True,
        False,
        False,
        "VAPID key mismatch: the subscription was made with another applicationServerKey "
        "than this application's vapid_public_key",
    ),
    ("HTTP404", 404, True, True, False, "the subscription does not exist"),
    ("HTTP410", 410, True, True, False, "the subscription expired or was unsubscribed"),
    ("HTTP413", 413, True, False, False, "the push service refused the payload's size"),
    ("HTTP429", 429, False, False, False, "too many requests; wait for Retry-After"),
    ("HTTP500", 500, False, False, False, "push service internal error"),
    ("HTTP502", 502, False, False, False, "push service bad gateway"),
    ("HTTP503", 503, False, False, False, "push service unavailable"),
    ("HTTP504", 504, False, False, False, "push service gateway timeout"),
    # Found before sending: nothing went out.
    (
        "endpoint_not_allowed",
        None,
        True,
        False,
        False,
        "the endpoint is not a URL of an allowed push service; nothing was sent",
    ),
    (
        "subscription_keys_invalid",
        None,
        True,
        False,
        False,
        "the subscription's p256dh/auth keys are unusable; nothing was sent",
    ),
]
WEB_PUSH_ERRORS: dict[str, ErrorClass] = error_table("WebPush", _ROWS)


def webpush_failure(
    message_id: str,
    code: str,
    detail: str = "",
    *,
    status: int | None = None,
    retry_after: float | None = None,
    latency_ms: float | None = None,
) -> SendResult:
    error = classified(WEB_PUSH_ERRORS, "WebPush", code, status)
    return failure(
        message_id,
        error,
        error.meaning if not detail else f"{error.meaning}: {detail}",
        status=status,
        retry_after=None if error.permanent else retry_after,
        latency_ms=latency_ms,
    )


def classify_webpush(
    message_id: str,
    status: int,
    headers: Mapping[bytes, bytes],
    body: bytes,
    *,
    latency_ms: float | None = None,
) -> SendResult:
    """The result of one push service answer."""
    if 200 <= status < 300:
        location = headers.get(b"location")
        return SendResult(
            message_id=message_id,
            ok=True,
            provider_id=location.decode("latin-1") if location else None,
            status_code=status,
            latency_ms=latency_ms,
        )
    return webpush_failure(
        message_id,
        f"HTTP{status}",
        _answer_text(body),
        status=status,
        retry_after=parse_retry_after(headers.get(b"retry-after")),
        latency_ms=latency_ms,
    )


def _answer_text(body: bytes) -> str:
    """What the push service said: the `message` of a JSON error (Mozilla's autopush), else
    the start of its text (FCM, Apple)."""
    if not body:
        return ""
    text = body[:2000].decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        detail = parsed.get("message") or parsed.get("reason") or parsed.get("error")
        if detail:
            text = str(detail)
    return " ".join(text.split())[:300]
