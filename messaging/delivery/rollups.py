"""Per-minute rollups of sending, kept as work happens: each delivery batch adds its counts
and provider latencies to DeliveryRollup (and its provider error codes to ErrorRollup) in one
INSERT ... ON CONFLICT DO UPDATE, in the transaction that records the batch. The operators'
console reads these small tables and never the messages.

A row's key is (minute, application, channel, shard), the shard being the writing process's
slot (its pid modulo SHARDS): consecutive pids of a worker pool map to distinct slots, so two
processes do not add to the same row and no rollup row serialises sending. The row lock the
upsert takes is held until the batch commits, which is why record_results makes this call
last. Keys are inserted in sorted order, so two batches that do meet on rows lock them in the
same order and cannot deadlock.

Cost per 500-message batch of one application and channel, a tenth failed (python
bench/rollup_cost.py, local PostgreSQL 15, a 2-core machine shared with other work): 1.7 to
2.8 ms median, 0.5 to 0.7 ms of it building the groups in Python; PostgreSQL executes the
statement in about 0.3 ms (EXPLAIN ANALYZE), the rest is the round trip and the JSON. The
batch's commit, which the rollups share, is not counted.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache

from django.db import connection

from ..models import DeliveryRollup, ErrorRollup

SHARDS = 16

# Upper bounds (ms) of the latency buckets, log-spaced by 10^(1/8) (about 33 % apart) from
# 1 ms to 100 s; a last bucket holds everything slower. Fixed: rows of different times are
# added element-wise. A p95 read from them is within one bucket's width (messaging.selectors).
BOUNDS_MS: tuple[float, ...] = tuple(round(10 ** (i / 8), 3) for i in range(41))
BUCKETS = len(BOUNDS_MS) + 1

# Failures decided before any provider was asked (messaging.delivery.record.UNSENDABLE's
# codes; a test keeps the two equal): a message failed, but no attempt was made.
NOT_ATTEMPTED = frozenset({"subscription_disabled", "subscription_deleted"})

_SUCCESSFUL, _FAILED = "successful", "failed"


def shard() -> int:
    """This process's slot."""
    return os.getpid() % SHARDS


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def latency_bucket(latency_ms: float) -> int:
    return bisect_left(BOUNDS_MS, latency_ms)


def add_batch(messages: Iterable, results: dict, now: datetime) -> None:
    """Adds a recorded batch to the rollups: per (application, channel), attempts, messages
    that became successful or failed, attempts that will be retried, latencies, and the error
    codes of failed attempts. `messages` carry their new status and error code (after
    record's transitions)."""
    if connection.vendor != "postgresql":
        return
    rows, errors = batch_groups(messages, results)
    if not rows:
        return
    params = {"minute": minute_of(now), "shard": shard(), "rows": json.dumps(rows)}
    sql = _delivery_upsert_sql()
    if errors:
        params["errors"] = json.dumps(errors)
        sql = f"WITH errors AS ({_error_upsert_sql()}) {sql}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def batch_groups(messages: Iterable, results: dict) -> tuple[list[dict], list[dict]]:
    """The batch's DeliveryRollup and ErrorRollup rows (without minute and shard), in key
    order."""
    groups: dict[tuple, list] = {}
    errors: dict[tuple, int] = defaultdict(int)
    for message in messages:
        result = results[message.id]
        key = (message.application_id, message.channel)
        group = groups.get(key)
        if group is None:
            # sent, successful, failed_permanent, failed_temporary, latency histogram
            group = groups[key] = [0, 0, 0, 0, [0] * BUCKETS]
        attempted = result.error_code not in NOT_ATTEMPTED
        if attempted:
            group[0] += 1
            if result.latency_ms is not None:
                group[4][bisect_left(BOUNDS_MS, result.latency_ms)] += 1
            if not result.ok:
                # As recorded on the message (a dead token's is "token_invalid"), so the
                # message log's filter by error code finds what the rollup counted.
                errors[(*key, (message.error_code or "error")[:64])] += 1
        if message.status == _SUCCESSFUL:
            group[1] += 1
        elif message.status == _FAILED:
            group[2] += 1
        elif attempted and not result.ok:
            group[3] += 1
    rows = [
        {
            "application_id": str(app),
            "channel": channel,
            "sent": g[0],
            "successful": g[1],
            "failed_permanent": g[2],
            "failed_temporary": g[3],
            "latency": g[4],
        }
        for (app, channel), g in sorted(groups.items(), key=_by_key)
    ]
    error_rows = [
        {"application_id": str(app), "channel": channel, "error_code": code, "count": n}
        for (app, channel, code), n in sorted(errors.items(), key=_by_key)
    ]
    return rows, error_rows


def _by_key(item: tuple) -> tuple:
    """Keys in the statement's ORDER BY order (ids compared as PostgreSQL compares uuids,
    which is their text order)."""
    key = item[0]
    return (str(key[0]), *key[1:])


def purge(*, now: datetime, days: int) -> int:
    """Deletes rollup rows older than `days`; returns how many."""
    cutoff = minute_of(now) - timedelta(days=days)
    deleted, _ = DeliveryRollup.objects.filter(minute__lt=cutoff).delete()
    errors, _ = ErrorRollup.objects.filter(minute__lt=cutoff).delete()
    return deleted + errors


_COUNTERS = ("sent", "successful", "failed_permanent", "failed_temporary")


@lru_cache(maxsize=1)
def _delivery_upsert_sql() -> str:
    """The batch's groups from one JSON document (one statement, whatever the number of
    groups), added to existing rows; histograms element-wise."""
    table = DeliveryRollup._meta.db_table
    counters = ", ".join(_COUNTERS)
    record = ", ".join(f"{name} bigint" for name in _COUNTERS)
    coalesced = ", ".join(f"coalesce(v.{name}, 0)" for name in _COUNTERS)
    added = ", ".join(f"{name} = r.{name} + excluded.{name}" for name in _COUNTERS)
    return f"""
INSERT INTO {table} AS r (minute, application_id, channel, shard, {counters}, latency)
SELECT %(minute)s, v.application_id, v.channel, %(shard)s, {coalesced}, v.latency
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS v(application_id uuid, channel varchar, {record}, latency bigint[])
ORDER BY v.application_id, v.channel
ON CONFLICT (minute, application_id, channel, shard) DO UPDATE SET {added},
  latency = ARRAY(
    SELECT coalesce(a, 0) + coalesce(b, 0)
    FROM unnest(r.latency, excluded.latency) WITH ORDINALITY AS t(a, b, i) ORDER BY i
  )
"""  # noqa: S608 (names are ours)


@lru_cache(maxsize=1)
def _error_upsert_sql() -> str:
    table = ErrorRollup._meta.db_table
    return f"""
INSERT INTO {table} AS r (minute, application_id, channel, error_code, shard, count)
SELECT %(minute)s, v.application_id, v.channel, v.error_code, %(shard)s, v.count
FROM jsonb_to_recordset(%(errors)s::jsonb)
     AS v(application_id uuid, channel varchar, error_code varchar, count bigint)
ORDER BY v.application_id, v.channel, v.error_code
ON CONFLICT (minute, application_id, channel, error_code, shard)
DO UPDATE SET count = r.count + excluded.count
"""  # noqa: S608 (names are ours)
