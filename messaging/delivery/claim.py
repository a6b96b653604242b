"""Claiming a batch: the still-pending, due messages among some ids, locked for this
worker's transaction and loaded with their tokens in one statement."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import field, make_dataclass
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any

from django.db import connection
from django.db.models import Q

from core import crypto, rows
from core.bulk import uuid_array

from ..message_columns import CLAIMED, CLAIMED_FROM_SUBSCRIPTION, WRITTEN
from ..models import Message, MessageStatus, Subscription


def _result_default(name: str):
    """A written column the claim does not read starts at the model's default: nothing of a
    send has been recorded in memory yet."""
    return field(default=Message._meta.get_field(name).get_default())


# A claimed message as the hot path handles it, and nothing of a model instance's machinery
# (a batch has hundreds): the claimed columns in the claim's order (so a row of the claim
# makes one positionally), then what sending sets in memory and record.write_messages writes.
# `token` and `keys` arrive encrypted, `data` and `parts` as JSON text; claim_batch converts
# them. A deleted
# subscription's token is "" and its `subscription_enabled` and `user_id` None.
Outgoing = make_dataclass(
    "Outgoing",
    [
        *CLAIMED,
        *(name for _column, name in CLAIMED_FROM_SUBSCRIPTION),
        *((name, Any, _result_default(name)) for name in WRITTEN if name not in CLAIMED),
    ],
    slots=True,
    namespace={"__module__": __name__},
)


@lru_cache(maxsize=1)
def _claim_sql() -> str:
    """The claim's SELECT: CLAIMED of the message, then CLAIMED_FROM_SUBSCRIPTION."""
    message, subscription = Message._meta, Subscription._meta
    # The id and enqueued_at come as text: the batch only passes them on (to the provider,
    # the events, the UPDATE), and a uuid or a timestamp parsed into Python only to be
    # printed again cost 5 % of a delivery process's CPU.
    as_text = {"id", "enqueued_at"}
    claimed = [
        f"{rows.columns('m', [message.get_field(name)])}::text"
        if name in as_text
        else rows.columns("m", [message.get_field(name)])
        for name in CLAIMED
    ]
    selected = ", ".join(
        [
            *claimed,
            rows.columns("s", [subscription.get_field(c) for c, _ in CLAIMED_FROM_SUBSCRIPTION]),
        ]
    )
    return f"""
SELECT {selected}
FROM {message.db_table} AS m LEFT JOIN {subscription.db_table} AS s ON s.id = m.subscription_id
WHERE m.id = ANY(%(ids)s::uuid[]) AND m.status = 'pending'
  AND (m.send_after IS NULL OR m.send_after <= %(now)s)
FOR UPDATE OF m SKIP LOCKED
"""  # noqa: S608 (names are ours)


def claim_batch(message_ids: Sequence[str], now: datetime) -> list[Outgoing]:
    """Locks the batch's sendable messages for this worker's transaction (other workers skip
    them; if this worker dies, PostgreSQL releases them) and loads them with their tokens,
    in one statement. Must run inside the transaction that records the results. On
    PostgreSQL a message's `id` and `enqueued_at` are text (see _claim_sql)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_claim_sql(), {"ids": uuid_array(message_ids), "now": now})
            return _outgoing_rows(cursor.fetchall())
    found = list(
        Message.objects.filter(pk__in=message_ids, status=MessageStatus.PENDING).filter(
            Q(send_after__isnull=True) | Q(send_after__lte=now)
        )
    )
    # (token, enabled, keys, user_id) by subscription; a deleted one's is ("", None, {}, None),
    # as on PostgreSQL.
    known = {
        pk: (s.token, s.enabled, s.keys, s.user_id)
        for pk, s in Subscription.objects.in_bulk({m.subscription_id for m in found}).items()
    }
    claimed = attrgetter(*CLAIMED)
    gone = ("", None, {}, None)
    return [Outgoing(*claimed(m), *known.get(m.subscription_id, gone)) for m in found]


def _outgoing_rows(rows: Iterable[tuple]) -> list[Outgoing]:
    """Outgoing messages from the claim's rows, with their data and parts parsed and tokens
    (and WebPush keys) decrypted."""
    messages = []
    for row in rows:
        message = Outgoing(*row)
        message.data = json.loads(message.data)
        message.parts = json.loads(message.parts) if message.parts != "{}" else {}
        # Only WebPush subscriptions have keys; every other row holds "" (nothing to decrypt).
        message.keys = json.loads(crypto.decrypt(message.keys)) if message.keys else {}
        messages.append(message)
    # A subscription deleted after its message was stored (no constraint ties them, see
    # Message.subscription): no token, enabled None, and the message fails.
    with_tokens = [m for m in messages if m.token is not None]
    for message, token in zip(
        with_tokens, crypto.decrypt_many([m.token for m in with_tokens]), strict=True
    ):
        message.token = token
    for message in messages:
        if message.token is None:
            message.token = ""
    return messages
