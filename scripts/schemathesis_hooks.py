"""Schemathesis hooks of scripts/fuzz_api.py (loaded through schemathesis.toml)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import schemathesis

CAMPAIGN_PATHS = ("/api/v1/campaigns", "/api/v1/campaigns/{campaign_id}")


@schemathesis.hook
def before_call(context, case, kwargs):
    """A campaign's `scheduled_at` must lie in the future, which no schema can say of a
    date-time: a generated one in the past is moved a day past now (a well-formed value stays
    well-formed, so positive and negative cases keep their meaning)."""
    if case.operation.path not in CAMPAIGN_PATHS or not isinstance(case.body, dict):
        return
    value = case.body.get("scheduled_at")
    if not isinstance(value, str):
        return
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return
    if moment.tzinfo is not None and moment <= datetime.now(UTC):
        case.body["scheduled_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
