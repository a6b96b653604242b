"""Recording a batch's results: each message's transition, its attempt and status events,
retries with back-off, dead tokens' subscriptions disabled, all written in bulk."""

from __future__ import annotations

import random
from collections import Counter, defaultdict, namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, UUIDField
from django_fsm import TransitionNotAllowed

from adapters.base import SendResult
from core import jsontext, metrics
from core.bulk import cast_types, copy_rows
from core.channels import LOCAL, SPECS

from .. import dispatch
from ..inbox.deliver import inbox_items_write
from ..message_columns import EVENT_COLUMNS, WRITTEN
from ..models import Message, MessageEvent, MessageStatus
from ..services.subscriptions import TOKEN_INVALID, subscriptions_disable
from ..signals import message_statuses_changed
from . import rollups
from .claim import Outgoing


@dataclass(frozen=True)
class BatchReport:
    claimed: int
    outcomes: Counter  # status (or "retry") -> count


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential back-off with jitter, never sooner than the provider's Retry-After."""
    base = settings.MESSAGE_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    delay = min(settings.MESSAGE_RETRY_MAX_SECONDS, base * random.uniform(0.8, 1.2))
    return max(delay, retry_after or 0.0)


@lru_cache(maxsize=1)
def _allowed_transitions() -> frozenset[tuple[str, str]]:
    """(source, target) pairs, read from the django-fsm transitions declared on Message: the
    state machine stays the one definition, and the hot path checks it without a model
    instance or signals per message."""
    field_ = Message._meta.get_field("status")
    return frozenset((t.source, t.target) for t in field_.get_all_transitions(Message))


def _move(message: Outgoing, target: str) -> None:
    if (message.status, target) not in _allowed_transitions():
        raise TransitionNotAllowed(f"Message {message.id}: {message.status} -> {target}")
    message.status = target


_Event = namedtuple("_Event", EVENT_COLUMNS)


@dataclass
class _Outcome:
    """What a batch's results mean, worked out in memory before anything is written."""

    events: list[_Event] = field(default_factory=list)
    dead_subscriptions: set = field(default_factory=set)
    retries: dict[tuple[str, int], list[Outgoing]] = field(
        default_factory=lambda: defaultdict(list)
    )
    retry_after: dict[tuple[str, int], float] = field(default_factory=lambda: defaultdict(float))
    outcomes: Counter = field(default_factory=Counter)
    transitions: Counter = field(default_factory=Counter)


# Failures decided before any provider was asked (by the subscription's `enabled`, None when
# it no longer exists): no attempt is counted or recorded.
UNSENDABLE = {
    False: ("subscription_disabled", "The subscription was disabled before the message was sent."),
    None: ("subscription_deleted", "The subscription was deleted before the message was sent."),
}
_NOT_ATTEMPTED = frozenset(code for code, _text in UNSENDABLE.values())
_LOCAL_CHANNELS = frozenset(t for t, spec in SPECS.items() if spec.delivery == LOCAL)
_ATTEMPT, _STATUS = MessageEvent.Type.ATTEMPT.value, MessageEvent.Type.STATUS.value


def _apply_results(
    messages: list[Outgoing], results: dict, now: datetime, queue: str | None
) -> _Outcome:
    """Runs each message's transition (pure) and collects events, retries and counters."""
    max_attempts = settings.MESSAGE_MAX_ATTEMPTS
    out = _Outcome()
    for message in messages:
        result = results[message.id]
        if result.error_code not in _NOT_ATTEMPTED:
            message.attempts += 1
            details = _attempt_details(message.attempts, result, queue)
            out.events.append(
                _Event(message_id=message.id, type=_ATTEMPT, status="", at=now, details=details)
            )
        if result.ok:
            _move(message, MessageStatus.SUCCESSFUL)
            message.sent_at = now
            message.provider_id = result.provider_id or ""
            message.error_code, message.error_message, message.error_permanent = "", "", None
        else:
            message.error_message = result.error_message or result.error_code or ""
            message.error_code = result.error_code or "error"
            if result.token_invalid:
                message.error_code = "token_invalid"
                message.error_message = f"{result.error_code}: {result.error_message}".strip(": ")
                out.dead_subscriptions.add(message.subscription_id)
            message.error_permanent = bool(result.permanent or result.token_invalid)
            if message.error_permanent:
                _move(message, MessageStatus.FAILED)
            elif message.attempts >= max_attempts:
                message.error_message = (
                    f"Gave up after {message.attempts} attempts; last: {message.error_message}"
                )
                _move(message, MessageStatus.FAILED)
            else:
                key = (dispatch.RETRY_QUEUE, message.attempts)
                out.retries[key].append(message)
                out.retry_after[key] = max(out.retry_after[key], result.retry_after or 0.0)
                out.outcomes["retry"] += 1
                continue
        out.outcomes[message.status] += 1
        if message.campaign_run_id:
            out.transitions[(message.campaign_run_id, MessageStatus.PENDING, message.status)] += 1
        details = {"error": message.error_code} if message.error_code else {}
        out.events.append(
            _Event(
                message_id=message.id, type=_STATUS, status=message.status, at=now, details=details
            )
        )
    return out


def record_results(
    messages: list[Outgoing], results: dict, now: datetime, queue: str | None
) -> BatchReport:
    with transaction.atomic(savepoint=False):
        # Only rows still pending are written or counted, so campaign statistics count each
        # message once. On PostgreSQL the claim's row locks guarantee it (nothing else can
        # change a locked row before this transaction ends); elsewhere it is checked.
        if connection.vendor != "postgresql":
            still_pending = set(
                Message.objects.filter(
                    pk__in=[m.id for m in messages], status=MessageStatus.PENDING
                ).values_list("pk", flat=True)
            )
            messages = [m for m in messages if m.id in still_pending]
        out = _apply_results(messages, results, now, queue)
        delays = {key: retry_delay(key[1], out.retry_after[key]) for key in out.retries}
        for key, group in out.retries.items():
            for message in group:
                # Counted from the attempt, so the stale sweep leaves it alone until it is due.
                message.enqueued_at = now + timedelta(seconds=delays[key])
        write_messages(messages, out.events)
        delivered_locally = [
            m
            for m in messages
            if m.status == MessageStatus.SUCCESSFUL and m.channel in _LOCAL_CHANNELS
        ]
        inbox_items_write(delivered_locally, now)
        if out.dead_subscriptions:
            subscriptions_disable(
                subscription_ids=out.dead_subscriptions,
                reason=TOKEN_INVALID,
                actor="system:delivery",
                now=now,
            )
        if out.transitions:
            message_statuses_changed.send(sender=Message, transitions=out.transitions)
        for key, group in out.retries.items():
            ids = [str(m.id) for m in group]
            transaction.on_commit(
                lambda ids=ids, key=key: dispatch.enqueue(key[0], ids, countdown=delays[key])
            )
        # Counted once the batch is committed: a batch rolled back is sent again, not twice.
        transaction.on_commit(lambda: metrics.observe_batch(messages, results, out.outcomes))
        rollups.add_batch(messages, results, now)  # last: its row locks are held to commit
    return BatchReport(claimed=len(messages), outcomes=out.outcomes)


def _written_columns() -> tuple[list[str], str, str]:
    """The id and WRITTEN as quoted columns, their `SET` list from a recordset `v`, and the
    recordset's column definitions."""
    fields = [Message._meta.get_field(name) for name in ("id", *WRITTEN)]
    quote = connection.ops.quote_name
    columns = [quote(f.column) for f in fields]
    types = cast_types(Message, ("id", *WRITTEN))
    assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
    record = ", ".join(f"{column} {type_}" for column, type_ in zip(columns, types, strict=True))
    return columns, assignments, record


@lru_cache(maxsize=1)
def _update_sql() -> str:
    """The UPDATE of WRITTEN by id. The new values travel as one JSON document, read back by
    jsonb_to_recordset: one encoding of the batch in C (core.jsontext), where psycopg adapts
    a Python list per column element by element (about 3.5 us per element: 15 ms per
    500-message batch)."""
    _columns, assignments, record = _written_columns()
    return f"""
UPDATE {Message._meta.db_table} AS m SET {assignments}
FROM jsonb_to_recordset(%(rows)s::jsonb) AS v({record})
WHERE m.id = v.id
"""  # noqa: S608 (names are ours)


@lru_cache(maxsize=1)
def _written_object() -> Callable[[Outgoing], dict]:
    """A function from an Outgoing to its JSON object for _update_sql: keys the recordset's
    columns, ids as text, timestamps in ISO 8601 with their offset. Compiled from WRITTEN
    once (as dataclasses and namedtuple compile their methods), so a message costs one
    dict literal: generic code (zip, or json.dumps' default= hook) cost 0.5-1 ms more per
    500-message batch, as much as building the batch's Outgoing rows."""
    items = []
    for name in ("id", *WRITTEN):
        field_ = Message._meta.get_field(name)
        value = f"m.{field_.attname}"
        # Claimed as text on PostgreSQL (delivery.claim), UUIDs and datetimes elsewhere; a
        # retry's new enqueued_at is a datetime.
        if isinstance(field_, UUIDField):
            value = f"str({value}) if {value} is not None else None"
        elif isinstance(field_, DateTimeField):
            value = (
                f"({value} if {value}.__class__ is str else {value}.isoformat())"
                f" if {value} is not None else None"
            )
        items.append(f"{field_.column!r}: {value}")
    # Only our own field names and columns go into the source.
    return eval("lambda m: {" + ", ".join(items) + "}")  # noqa: S307


def _written_json(messages: list[Outgoing]) -> str:
    """The batch's ids and WRITTEN values as the JSON _update_sql reads."""
    return jsontext.dumps(list(map(_written_object(), messages)))


@lru_cache(maxsize=1)
def _events_sql() -> str:
    """The INSERT of EVENT_COLUMNS rows read from one JSON document (as _update_sql reads
    its values): a batch's events ride in the UPDATE's statement."""
    fields = [MessageEvent._meta.get_field(name) for name in EVENT_COLUMNS]
    quote = connection.ops.quote_name
    columns = [quote(f.column) for f in fields]
    types = cast_types(MessageEvent, EVENT_COLUMNS)
    record = ", ".join(f"{column} {type_}" for column, type_ in zip(columns, types, strict=True))
    return (
        f"INSERT INTO {MessageEvent._meta.db_table} ({', '.join(columns)})"  # noqa: S608
        f" SELECT {', '.join(columns)} FROM jsonb_to_recordset(%(events)s::jsonb) AS e({record})"
    )


def _events_json(events: list[tuple]) -> str:
    """EVENT_COLUMNS rows as the JSON _events_sql reads: each event's details stay a dict,
    so one encoding (in C, core.jsontext) covers the batch, where COPY encoded each event's details
    apart and formatted each row (a tenth of a delivery process's CPU)."""
    stamps: dict = {}  # a batch's events share one or two timestamps
    rows = []
    for message_id, type_, status, at, details in events:
        stamp = stamps.get(at)
        if stamp is None:
            stamp = stamps[at] = at.isoformat()
        rows.append(
            {
                "message_id": str(message_id),
                "type": type_,
                "status": status,
                "at": stamp,
                "details": details,
            }
        )
    return jsontext.dumps(rows)


@lru_cache(maxsize=1)
def _update_with_events_sql() -> str:
    """_update_sql whose rows also carry each message's attempt and status events' details
    (`_attempt`, `_status`; null: no such event), inserted by the same statement: one JSON
    document a batch, without an object, an id and a timestamp per event."""
    columns, assignments, record = _written_columns()
    quote = connection.ops.quote_name
    event_columns = ", ".join(
        quote(MessageEvent._meta.get_field(name).column) for name in EVENT_COLUMNS
    )
    message_id, status = columns[0], quote(Message._meta.get_field("status").column)
    return f"""
WITH v AS (
  SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS v({record}, _attempt jsonb, _status jsonb)
), written AS (
  UPDATE {Message._meta.db_table} AS m SET {assignments} FROM v WHERE m.id = v.id
)
INSERT INTO {MessageEvent._meta.db_table} ({event_columns})
SELECT {message_id}, '{_ATTEMPT}', '', %(at)s::timestamptz, _attempt FROM v
WHERE _attempt IS NOT NULL
UNION ALL
SELECT {message_id}, '{_STATUS}', {status}, %(at)s::timestamptz, _status FROM v
WHERE _status IS NOT NULL
"""  # noqa: S608 (names and the two event types are ours)


def _rows_with_events(messages: list[Outgoing], events: list[tuple]) -> tuple[str, object] | None:
    """The rows of _update_with_events_sql and the events' one timestamp, or None when the
    events are not that shape (another type, two of a kind for a message, a message not
    in the batch, several timestamps, a status event whose status is not the message's)."""
    if not events:
        return None
    at = events[0][3]
    by_id: dict = {}
    for message_id, type_, status, event_at, details in events:
        if event_at != at:
            return None
        pair = by_id.get(message_id)
        if pair is None:
            pair = by_id[message_id] = [None, None, None]
        slot = 0 if type_ == _ATTEMPT else 1 if type_ == _STATUS else None
        if slot is None or pair[slot] is not None:
            return None
        pair[slot] = details
        if slot == 1:
            pair[2] = status
    written = _written_object()
    rows = []
    for message in messages:
        row = written(message)
        pair = by_id.pop(message.id, None)
        if pair is not None:
            if pair[1] is not None and pair[2] != message.status:
                return None
            row["_attempt"], row["_status"] = pair[0], pair[1]
        rows.append(row)
    if by_id:
        return None
    return jsontext.dumps(rows), at


def write_messages(messages: list[Outgoing], events: list[tuple]) -> None:
    """The batch's new statuses in one UPDATE and its events (EVENT_COLUMNS rows), in one
    statement. On PostgreSQL the values travel as JSON documents (Django's bulk_update
    builds a CASE per row and column, which costs seconds per batch); elsewhere
    bulk_update and bulk_create do."""
    if connection.vendor != "postgresql":
        if messages:
            rows_ = [
                Message(id=m.id, **{name: getattr(m, name) for name in WRITTEN}) for m in messages
            ]
            Message.objects.bulk_update(rows_, list(WRITTEN))
        copy_rows(MessageEvent, EVENT_COLUMNS, events)
        return
    with connection.cursor() as cursor:
        if not messages:
            if events:
                cursor.execute(_events_sql(), {"events": _events_json(events)})
            return
        merged = _rows_with_events(messages, events)
        if merged is not None:
            rows, at = merged
            cursor.execute(_update_with_events_sql(), {"rows": rows, "at": at})
            return
        params = {"rows": _written_json(messages)}
        if not events:
            cursor.execute(_update_sql(), params)
            return
        cursor.execute(
            f"WITH written AS ({_update_sql()}) {_events_sql()}",
            params | {"events": _events_json(events)},
        )


def _attempt_details(attempt: int, result: SendResult, queue: str | None) -> dict:
    details = {"attempt": attempt, "ok": result.ok}
    if queue:
        details["queue"] = queue
    for name in ("status_code", "error_code", "provider_id", "retry_after"):
        value = getattr(result, name)
        if value is not None:
            details[name] = value
    if result.latency_ms is not None:
        details["latency_ms"] = round(result.latency_ms, 2)
    if not result.ok:
        details["permanent"] = result.permanent
        details["token_invalid"] = result.token_invalid
        if result.error_message:
            details["reason"] = result.error_message[:500]
    return details
