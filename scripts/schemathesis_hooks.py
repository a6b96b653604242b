"""Schemathesis hooks of scripts/fuzz_api.py (loaded through schemathesis.toml)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import schemathesis

# Timestamps whose allowed range is relative to now, which no schema can say of a date-time:
# (path, field) -> (may it lie in the past, how far ahead it may lie).
BOUNDED_TIMESTAMPS = {
    ("/api/v1/campaigns", "scheduled_at"): (False, timedelta(days=365)),
    ("/api/v1/campaigns/{campaign_id}", "scheduled_at"): (False, timedelta(days=365)),
    ("/api/v1/messages", "send_after"): (True, timedelta(days=30)),
}


# A P-256 point on the curve (RFC 8291's example user agent key), in PushSubscription's form.
VALID_P256DH = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
P256DH_FORM = re.compile(r"^B[A-Za-z0-9_-]{86}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    _issued_values_only(case)
    _timestamps_in_range(case)
    _points_on_the_curve(case)


def _points_on_the_curve(case) -> None:
    """A WebPush `p256dh` the schema admits (87 base64url characters) is rarely a point on
    the P-256 curve, which the server checks and no schema can say: a well-formed one is
    replaced by a real point, so positive cases stay positive; malformed ones are sent as
    generated."""
    if not isinstance(case.body, dict):
        return
    keys = case.body.get("keys")
    if isinstance(keys, dict) and P256DH_FORM.match(str(keys.get("p256dh", ""))):
        keys["p256dh"] = VALID_P256DH


def _issued_values_only(case) -> None:
    """A list's `cursor` is valid only as the server issued it in a `next` link; a generated
    one that the schema admits (any non-blank text) is left out rather than sent as a forged
    cursor (400). Blank ones, which the schema refuses, are still sent."""
    cursor = (case.query or {}).get("cursor")
    if isinstance(cursor, str) and cursor.strip():
        del case.query["cursor"]


def _timestamps_in_range(case) -> None:
    """A generated timestamp outside its range is moved to a day past now: a well-formed value
    stays well-formed, so positive and negative cases keep their meaning."""
    if not isinstance(case.body, dict):
        return
    now = datetime.now(UTC)
    for (path, field), (past_allowed, max_ahead) in BOUNDED_TIMESTAMPS.items():
        value = case.body.get(field) if case.operation.path == path else None
        if not isinstance(value, str):
            continue
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            continue
        if moment.tzinfo is None:
            continue
        if (moment <= now and not past_allowed) or moment > now + max_ahead - timedelta(days=1):
            case.body[field] = (now + timedelta(days=1)).isoformat()
