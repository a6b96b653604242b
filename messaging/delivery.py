"""The delivery pipeline: claim a batch of pending messages, send it through the adapters,
write every status and event in bulk, retry what may succeed later."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import uuid
from collections import Counter, defaultdict, namedtuple
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, Q, UUIDField
from django.utils import timezone
from django.utils.module_loading import import_string
from django_fsm import TransitionNotAllowed

from adapters import registry
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult

from . import crypto, rows
from .bulk import COPY_FROM_ROWS, cast_types, copy_rows, insert_statement, uuid_array
from .message_columns import CLAIMED, CLAIMED_FROM_SUBSCRIPTION, EVENT_COLUMNS, WRITTEN
from .models import (
    Application,
    Message,
    MessageEvent,
    MessageStatus,
    Subscription,
    SubscriptionType,
    SweepMark,
)
from .outbox import broker_marker_place, broker_marker_present, enqueue
from .services.subscriptions import TOKEN_INVALID, subscriptions_disable
from .signals import broker_data_lost

logger = logging.getLogger(__name__)

QUEUE_FOR_PRIORITY = {Message.Priority.HIGH: "critical", Message.Priority.NORMAL: "messages"}
RETRY_QUEUE = "retry"


@dataclass(frozen=True)
class BatchReport:
    claimed: int
    outcomes: Counter  # status (or "retry") -> count


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential back-off with jitter, never sooner than the provider's Retry-After."""
    base = settings.MESSAGE_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    delay = min(settings.MESSAGE_RETRY_MAX_SECONDS, base * random.uniform(0.8, 1.2))
    return max(delay, retry_after or 0.0)


def _credentials(application: Application | _Sender, channel: str) -> Credentials:
    values = {
        SubscriptionType.IOS_PUSH: application.apns_credentials,
        SubscriptionType.ANDROID_PUSH: application.fcm_credentials,
    }.get(channel, application.settings.get("channels", {}).get(channel, {}))
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    return Credentials(key=f"{application.pk}:{channel}:{digest}", values=values)


def _get_adapter(channel: str):
    # The registry is the one seam between messaging and the providers.
    try:
        return registry.get_adapter(channel)
    except registry.UnknownChannelError:
        return None


def _result_default(name: str):
    """A written column the claim does not read starts at the model's default: nothing of a
    send has been recorded in memory yet."""
    return field(default=Message._meta.get_field(name).get_default())


# A claimed message as the hot path handles it, and nothing of a model instance's machinery
# (a batch has hundreds): the claimed columns in the claim's order (so a row of the claim
# makes one positionally), then what sending sets in memory and _write_messages writes.
# `token` arrives encrypted and `data` as JSON text; _claim converts both. A deleted
# subscription's token is "" and its `subscription_enabled` None.
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


@lru_cache(maxsize=1)
def _claim_sql() -> str:
    """The claim's SELECT: CLAIMED of the message, then CLAIMED_FROM_SUBSCRIPTION."""
    message, subscription = Message._meta, Subscription._meta
    selected = ", ".join(
        [
            rows.columns("m", [message.get_field(name) for name in CLAIMED]),
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


def _claim(message_ids: Sequence[str], now: datetime) -> list[Outgoing]:
    """Locks the batch's sendable messages for this worker's transaction (other workers skip
    them; if this worker dies, PostgreSQL releases them) and loads them with their tokens,
    in one statement. Must run inside the transaction that records the results."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_claim_sql(), {"ids": uuid_array(message_ids), "now": now})
            return _outgoing_rows(cursor.fetchall())
    found = list(
        Message.objects.filter(pk__in=message_ids, status=MessageStatus.PENDING).filter(
            Q(send_after__isnull=True) | Q(send_after__lte=now)
        )
    )
    # (token, enabled) by subscription; a deleted one's is ("", None), as on PostgreSQL.
    known = {
        pk: (s.token, s.enabled)
        for pk, s in Subscription.objects.in_bulk({m.subscription_id for m in found}).items()
    }
    claimed = attrgetter(*CLAIMED)
    return [Outgoing(*claimed(m), *known.get(m.subscription_id, ("", None))) for m in found]


def _outgoing_rows(rows: Iterable[tuple]) -> list[Outgoing]:
    """Outgoing messages from the claim's rows, with their data parsed and tokens decrypted."""
    messages = []
    for row in rows:
        message = Outgoing(*row)
        message.data = json.loads(message.data)
        # A subscription deleted after its message was stored (no constraint ties them, see
        # Message.subscription): no token, enabled None, and the message fails.
        message.token = crypto.decrypt(message.token) if message.token is not None else ""
        messages.append(message)
    return messages


@dataclass(frozen=True, slots=True)
class _Sender:
    """What sending needs of an application: its id, credentials and settings."""

    pk: uuid.UUID
    apns_credentials: dict
    fcm_credentials: dict
    settings: dict


_SENDERS = """
SELECT id, apns_credentials, fcm_credentials, settings FROM messaging_application
WHERE id = ANY(%s::uuid[])
"""


@lru_cache(maxsize=256)
def _decrypted_json(ciphertext: str) -> dict:
    """Credentials as stored (encrypted JSON), decrypted once per process and value: a
    batch needs them every time, and Fernet's decryption would cost on every batch. A
    changed credential is a new ciphertext, so it is never served stale. The dict is
    shared between batches: adapters read credentials and never change them."""
    # The field's own reading of its column: one definition of the stored format.
    return Application._meta.get_field("apns_credentials").from_db_value(
        ciphertext, None, connection
    )


def _applications(ids: set) -> dict:
    """The senders of a batch's messages, by application id, in one plain SELECT."""
    if connection.vendor != "postgresql":
        return {a.pk: a for a in Application.objects.filter(pk__in=ids)}
    with connection.cursor() as cursor:
        cursor.execute(_SENDERS, [uuid_array(ids)])
        return {
            pk: _Sender(pk, _decrypted_json(apns), _decrypted_json(fcm), json.loads(extra))
            for pk, apns, fcm, extra in cursor.fetchall()
        }


def _failures(messages: list[Outgoing], code: str, text: str, *, permanent: bool):
    return [
        SendResult(
            message_id=str(m.id), ok=False, error_code=code, error_message=text,
            permanent=permanent,
        )
        for m in messages
    ]  # fmt: skip


def _send_group(application: Application | _Sender, channel: str, messages: list[Outgoing]):
    """Sends one (application, channel) group; returns one SendResult per message."""
    adapter = _get_adapter(channel)
    if adapter is None:
        return _failures(
            messages,
            "channel_unavailable",
            f"No adapter is configured for {channel}.",
            permanent=True,
        )
    outbound = [
        OutboundMessage(
            message_id=str(m.id),
            token=m.token,
            title=m.title,
            body=m.body,
            data=m.data,
            priority=m.priority,
            ttl=m.ttl,
            collapse_id=m.collapse_id or None,
        )
        for m in messages
    ]
    try:
        return adapter.send_batch(_credentials(application, channel), outbound)
    except AdapterConfigurationError as exc:
        return _failures(messages, "credentials_invalid", str(exc), permanent=True)
    except Exception as exc:  # an adapter bug must not lose the batch: retry it
        logger.exception("Adapter %s failed on a batch of %d", channel, len(messages))
        return _failures(messages, "adapter_error", f"{type(exc).__name__}: {exc}", permanent=False)


# Channel groups of one batch go out side by side (each adapter is itself concurrent).
_group_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="deliver")


def deliver_batch(message_ids: Sequence[str], *, queue: str | None = None) -> BatchReport:
    """Sends the still-pending messages among `message_ids`; idempotent: messages already
    terminal, being sent by another worker or scheduled for later are left alone.

    One transaction spans the claim, the sending and the recording: the row locks are the
    claim, so no row is written to claim it, and a worker that dies releases its batch at
    once (its messages stay pending, and the sweep enqueues them again)."""
    with transaction.atomic():
        return _deliver(message_ids, queue)


def _deliver(message_ids: Sequence[str], queue: str | None) -> BatchReport:
    messages = _claim(message_ids, timezone.now())
    if not messages:
        return BatchReport(claimed=0, outcomes=Counter())
    applications = _applications({m.application_id for m in messages})
    results: dict[uuid.UUID, SendResult] = {}
    groups: dict[tuple, list[Outgoing]] = defaultdict(list)
    for message in messages:
        if message.subscription_enabled:
            groups[(message.application_id, message.channel)].append(message)
        else:
            code, text = _UNSENDABLE[message.subscription_enabled]
            [results[message.id]] = _failures([message], code, text, permanent=True)
    jobs = [(applications[app_id], channel, group) for (app_id, channel), group in groups.items()]
    if len(jobs) <= 1:  # none: every subscription was disabled, nothing goes out
        batches = [_send_group(*job) for job in jobs]
    else:
        batches = list(_group_pool.map(lambda job: _send_group(*job), jobs))
    for (_app, _channel, group), batch_results in zip(jobs, batches, strict=True):
        for message, result in zip(group, batch_results, strict=True):
            results[message.id] = result
    return _record(messages, results, timezone.now(), queue)


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
_UNSENDABLE = {
    False: ("subscription_disabled", "The subscription was disabled before the message was sent."),
    None: ("subscription_deleted", "The subscription was deleted before the message was sent."),
}
_NOT_ATTEMPTED = frozenset(code for code, _text in _UNSENDABLE.values())
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
                key = (RETRY_QUEUE, message.attempts)
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


def _record(
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
        _write_messages(messages, out.events)
        if out.dead_subscriptions:
            subscriptions_disable(
                subscription_ids=out.dead_subscriptions,
                reason=TOKEN_INVALID,
                actor="system:delivery",
                now=now,
            )
        notify_status_listeners(out.transitions)
        for key, group in out.retries.items():
            ids = [str(m.id) for m in group]
            transaction.on_commit(
                lambda ids=ids, key=key: enqueue(key[0], ids, countdown=delays[key])
            )
    return BatchReport(claimed=len(messages), outcomes=out.outcomes)


@lru_cache(maxsize=1)
def _update_sql() -> str:
    """The UPDATE of WRITTEN by id. The new values travel as one JSON document, read back by
    jsonb_to_recordset: json.dumps encodes a batch in C, where psycopg adapts a Python list
    per column element by element (about 3.5 us per element: 15 ms per 500-message batch)."""
    fields = [Message._meta.get_field(name) for name in ("id", *WRITTEN)]
    quote = connection.ops.quote_name
    columns = [quote(f.column) for f in fields]
    types = cast_types(Message, ("id", *WRITTEN))
    assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
    record = ", ".join(f"{column} {type_}" for column, type_ in zip(columns, types, strict=True))
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
        if isinstance(field_, UUIDField):
            value = f"str({value}) if {value} is not None else None"
        elif isinstance(field_, DateTimeField):
            value = f"{value}.isoformat() if {value} is not None else None"
        items.append(f"{field_.column!r}: {value}")
    # Only our own field names and columns go into the source.
    return eval("lambda m: {" + ", ".join(items) + "}")  # noqa: S307


def _written_json(messages: list[Outgoing]) -> str:
    """The batch's ids and WRITTEN values as the JSON _update_sql reads."""
    return json.dumps(list(map(_written_object(), messages)))


def _write_messages(messages: list[Outgoing], events: list[tuple]) -> None:
    """The batch's new statuses in one UPDATE and its events (EVENT_COLUMNS rows). On
    PostgreSQL the values travel as one JSON document (Django's bulk_update builds a CASE
    per row and column, which costs seconds per batch), and a small batch's events ride in
    the same statement (one round trip less per batch); elsewhere bulk_update does."""
    if not messages:
        copy_rows(MessageEvent, EVENT_COLUMNS, events)
        return
    if connection.vendor != "postgresql":
        rows_ = [Message(id=m.id, **{name: getattr(m, name) for name in WRITTEN}) for m in messages]
        Message.objects.bulk_update(rows_, list(WRITTEN))
        copy_rows(MessageEvent, EVENT_COLUMNS, events)
        return
    params = {"rows": _written_json(messages)}
    with connection.cursor() as cursor:
        if 0 < len(events) < COPY_FROM_ROWS:
            insert, values = insert_statement(MessageEvent, EVENT_COLUMNS, events)
            cursor.execute(f"WITH written AS ({_update_sql()}) {insert}", params | values)
            return
        cursor.execute(_update_sql(), params)
    copy_rows(MessageEvent, EVENT_COLUMNS, events)


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


def notify_status_listeners(transitions: Counter) -> None:
    """Tells interested apps (campaign statistics) how many messages moved between which
    statuses, keyed (campaign_run_id, old, new), inside the transaction that wrote them. The
    listeners are named in settings, so messaging imports none of them."""
    if not transitions:
        return
    for path in settings.MESSAGE_STATUS_LISTENERS:
        import_string(path)(transitions)


# --- The stale-pending sweep ------------------------------------------------------------------


def hand_over(rows: Sequence[tuple], now: datetime) -> None:
    """Enqueues (pk, priority) rows on their priority's queue and records when."""
    Message.objects.filter(pk__in=[pk for pk, _ in rows]).update(enqueued_at=now)
    by_queue: dict[str, list[str]] = defaultdict(list)
    for pk, priority in rows:
        by_queue[QUEUE_FOR_PRIORITY.get(priority, "messages")].append(str(pk))
    for queue, ids in by_queue.items():
        enqueue(queue, ids)


def pending_sweep(*, now: datetime | None = None, limit: int = 200_000) -> int:
    """Enqueues pending messages whose work never reached the broker (or was lost with a
    worker), and scheduled messages that are due. Returns how many it enqueued.

    No index lists the pending messages (it would make every send's update a non-HOT one,
    see Message.Meta): each sweep reads two time windows that continue where the last
    complete sweep stopped (SweepMark). "stale": enqueued_at from the last upper end, less
    MESSAGE_SWEEP_OVERLAP_SECONDS for clocks that differ between hosts, up to now less
    MESSAGE_STALE_AFTER_SECONDS; a message becomes a candidate that long after its hand-over,
    so a transaction that was still open at the last sweep is caught as long as it lasted
    less than that. "due": send_after from the last sweep, less MESSAGE_STALE_AFTER_SECONDS,
    up to now. Either window starts at the beginning when it has no mark yet (the first
    sweep after an upgrade reads all messages once). A sweep that stops at `limit` keeps
    its marks, so the next one reads the same windows again.

    When the broker lost its queued tasks (a restart without its data: the marker in
    outbox.broker_marker_present is gone), the work handed over since the stale window's end
    is lost too and would wait MESSAGE_STALE_AFTER_SECONDS: a third window, "lost", hands
    over every pending message handed over before now, the retries that are not yet due go
    back on the retry queue with what is left of their back-off, and `broker_data_lost`
    tells the other apps (campaign fan-outs). Only once all of it is done is the marker put
    back, so a sweep that fails midway is repeated by the next. Work that was not lost is
    enqueued twice at most, which the claim makes harmless."""
    now = now or timezone.now()
    stale_after = timedelta(seconds=settings.MESSAGE_STALE_AFTER_SECONDS)
    overlap = timedelta(seconds=settings.MESSAGE_SWEEP_OVERLAP_SECONDS)
    marks = dict(SweepMark.objects.values_list("name", "position"))
    stale_before = now - stale_after
    stale = Message.objects.filter(
        status=MessageStatus.PENDING, enqueued_at__lt=stale_before
    ).filter(Q(send_after__isnull=True) | Q(send_after__lte=now))
    if "stale" in marks:
        stale = stale.filter(enqueued_at__gte=marks["stale"] - overlap)
    due = Message.objects.filter(
        status=MessageStatus.PENDING, enqueued_at__isnull=True, send_after__lte=now
    )
    if "due" in marks:
        due = due.filter(send_after__gte=marks["due"] - max(stale_after, overlap))
    windows = [
        ("stale", stale, "enqueued_at", stale_before),
        ("due", due, "send_after", now),
    ]
    broker_lost = broker_marker_present() is False
    if broker_lost:
        # Handed over before now (hand_over writes `now`, so what it hands over leaves).
        lost = Message.objects.filter(
            status=MessageStatus.PENDING,
            enqueued_at__gte=stale_before - overlap,
            enqueued_at__lt=now,
        )
        windows.append(("lost", lost, "enqueued_at", None))
    size = settings.MESSAGE_BATCH_SIZE
    done = 0
    complete = True
    for name, candidates, column, upper in windows:
        # One pass along the window's column: each read starts where the last one ended
        # (rows handed over leave the window), not again over the finished rows before it.
        candidates = candidates.order_by(column)
        after = None
        while True:
            if done >= limit:
                complete = False
                break
            page = candidates if after is None else candidates.filter(**{f"{column}__gte": after})
            rows = list(page.values_list("pk", "priority", column)[:size])
            if not rows:
                if upper is not None:
                    SweepMark.objects.update_or_create(name=name, defaults={"position": upper})
                break
            hand_over([(pk, priority) for pk, priority, _ in rows], now)
            done += len(rows)
            after = rows[-1][2]
    if broker_lost and complete:
        retries = _requeue_future_retries(now)
        broker_data_lost.send(sender=pending_sweep, now=now)
        broker_marker_place()
        logger.warning(
            "The broker lost its queued tasks: enqueued %d pending messages and %d retries again",
            done,
            retries,
        )
    elif done:
        logger.info("Stale-pending sweep enqueued %d messages", done)
    return done


def _requeue_future_retries(now: datetime) -> int:
    """Puts the retries that are not yet due back on the retry queue, each with the rest of
    its back-off (their enqueued_at is when they are due)."""
    by_delay: dict[int, list[str]] = defaultdict(list)
    rows = Message.objects.filter(status=MessageStatus.PENDING, enqueued_at__gt=now)
    for pk, due_at in rows.values_list("pk", "enqueued_at").iterator(chunk_size=2000):
        by_delay[max(int((due_at - now).total_seconds()), 1)].append(str(pk))
    for delay, ids in by_delay.items():
        enqueue(RETRY_QUEUE, ids, countdown=delay)
    return sum(len(ids) for ids in by_delay.values())
