"""`Idempotency-Key`: the same key and body within 24 h replay the first response."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter

from core.exceptions import IdempotencyConflict
from core.models import IdempotencyRecord
from core.validation import check_text

WINDOW = timedelta(hours=24)
MAX_KEY_LENGTH = 255  # IdempotencyRecord.key


def request_digest(body) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def idempotent_call(
    *,
    owner_id,
    endpoint: str,
    key: str | None,
    body,
    produce: Callable[[], tuple[int, dict]],
) -> tuple[int, dict]:
    """Runs `produce` (which must write in the current transaction) at most once per key of
    `owner_id` (the application whose key it is).

    Two concurrent requests with one key both run `produce`, but only one commits: the
    other hits the unique constraint, rolls back everything it created, and replays the
    winner's response.
    """
    if not key:
        return produce()
    check_text(key, field="Idempotency-Key", max_length=MAX_KEY_LENGTH)
    digest = request_digest(body)
    replay = _replay(owner_id, endpoint, key, digest)
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            status, response = produce()
            IdempotencyRecord.objects.create(
                owner_id=owner_id,
                endpoint=endpoint,
                key=key,
                request_digest=digest,
                response_status=status,
                response_body=response,
            )
        return status, response
    except IntegrityError:
        replay = _replay(owner_id, endpoint, key, digest)
        if replay is None:
            raise
        return replay


def _replay(owner_id, endpoint, key, digest) -> tuple[int, dict] | None:
    record = IdempotencyRecord.objects.filter(owner_id=owner_id, endpoint=endpoint, key=key).first()
    if record is None:
        return None
    if record.created_at < timezone.now() - WINDOW:
        record.delete()  # expired: the key may be used afresh
        return None
    if record.request_digest != digest:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request body.",
            details={"idempotency_key": key},
        )
    return record.response_status, record.response_body


# The header as the OpenAPI document describes it, for every idempotent endpoint.
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "maxLength": MAX_KEY_LENGTH},
    location=OpenApiParameter.HEADER,
    required=False,
    description="The same key with the same body within 24 h returns the first response and "
    "creates nothing new; with a different body, 422 idempotency_conflict.",
)
