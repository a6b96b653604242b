"""What a provider's answer means for the pipeline, machinery every adapter shares.

Each adapter owns its provider's error table (`APNsAdapter.errors`, `TwilioSMSAdapter.errors`,
...), built here by `error_table`: every code maps to three flags, `permanent` (retrying the
same message cannot help), `token_invalid` (the device token, address or number is dead:
disable the subscription) and `credential_rejected` (our provider credential was refused:
renew it and resend once). A code missing from its table is classified by one rule,
`unknown_error`. `ERRORS.md` next to this module is generated from the tables by
`adapters.errors_doc`.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from adapters.base import ErrorClass, SendResult


def error_table(provider: str, rows: list[tuple]) -> dict[str, ErrorClass]:
    """A provider's table from rows of (code, HTTP status, permanent, token_invalid,
    credential_rejected, meaning), by code, in the rows' order."""
    return {row[0]: ErrorClass(provider, *row) for row in rows}


def unknown_error(provider: str, code: str, status: int | None) -> ErrorClass:
    """A code missing from its provider's table, by its HTTP status: temporary without an
    answer, and for 401 (our credential: the operator fixes it, the message is still good),
    429 and 5xx; permanent for any other status (a 3xx or 4xx: the same request would get
    the same answer)."""
    permanent = status is not None and status < 500 and status not in (401, 429)
    return ErrorClass(provider, code, status, permanent, False, False, "unknown error")


def classified(table: Mapping[str, ErrorClass], provider: str, code: str, status: int | None):
    """The table's row for `code`, else `unknown_error`'s."""
    return table.get(code) or unknown_error(provider, code, status)


def failure(
    message_id: str,
    error: ErrorClass,
    detail: str = "",
    *,
    status: int | None = None,
    retry_after: float | None = None,
    latency_ms: float | None = None,
    token_invalid: bool | None = None,
) -> SendResult:
    """The failed result of one message: `error`'s flags, `detail` or else its meaning as the
    message; `token_invalid` overrides the table when the answer says more."""
    return SendResult(
        message_id=message_id,
        ok=False,
        status_code=status,
        error_code=error.code,
        error_message=detail or error.meaning,
        permanent=error.permanent,
        token_invalid=error.token_invalid if token_invalid is None else token_invalid,
        retry_after=retry_after,
        latency_ms=latency_ms,
    )


# Failures found on our side, before or instead of a provider answer.
LOCAL_ERRORS: dict[str, ErrorClass] = error_table(
    "local",
    [
        ("payload_too_large", None, True, False, False, "payload over 4096 bytes; not sent"),
        ("network_error", None, False, False, False, "connection failed or was lost"),
        ("timeout", None, False, False, False, "no answer within the adapter's timeout"),
    ],
)


def local_failure(
    message_id: str, code: str, error_message: str = "", *, latency_ms: float | None = None
) -> SendResult:
    """A failure on our side: `payload_too_large`, `network_error` or `timeout`."""
    return failure(message_id, LOCAL_ERRORS[code], error_message, latency_ms=latency_ms)


def is_credential_rejected(result: SendResult, table: Mapping[str, ErrorClass]) -> bool:
    """Whether `result` is the provider refusing our credential, by its table."""
    if result.ok or result.error_code is None:
        return False
    error = table.get(result.error_code)
    return bool(error and error.credential_rejected)


def parse_retry_after(value: str | bytes | None) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 10.2.3): a number of seconds or
    an HTTP date (a date past is 0); None when absent or unreadable."""
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
            when = when.replace(tzinfo=datetime.UTC)
        seconds = max(when.timestamp() - time.time(), 0.0)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_json_body(raw: bytes | str) -> dict[str, Any] | None:
    """A provider's JSON error body, or None when it is not a JSON object."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
