"""The delivery pipeline: claim a batch of pending messages, send it through the adapters,
write every status and event in bulk, retry what may succeed later."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from adapters import registry
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult

from .bulk import copy_models
from .models import (
    Application,
    Message,
    MessageEvent,
    MessageStatus,
    Subscription,
    SubscriptionEvent,
    SubscriptionType,
)
from .outbox import enqueue

logger = logging.getLogger(__name__)

QUEUE_FOR_PRIORITY = {Message.Priority.HIGH: "critical", Message.Priority.NORMAL: "messages"}
RETRY_QUEUE = "retry"

_UPDATED_FIELDS = [
    "status",
    "attempts",
    "error_code",
    "error_message",
    "error_permanent",
    "provider_id",
    "sent_at",
    "enqueued_at",
    "lease_until",
]


@dataclass(frozen=True)
class BatchReport:
    claimed: int
    outcomes: Counter  # status (or "retry") -> count


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential back-off with jitter, never sooner than the provider's Retry-After."""
    base = settings.MESSAGE_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    delay = min(settings.MESSAGE_RETRY_MAX_SECONDS, base * random.uniform(0.8, 1.2))
    return max(delay, retry_after or 0.0)


def _credentials(application: Application, channel: str) -> Credentials:
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


def _claim(message_ids: Sequence[str], now: datetime) -> list[Message]:
    """Leases the batch's sendable messages to this worker; others skip them."""
    lease_until = now + timedelta(seconds=settings.MESSAGE_LEASE_SECONDS)
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(pk__in=message_ids, status=MessageStatus.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .filter(Q(send_after__isnull=True) | Q(send_after__lte=now))
            .values_list("pk", flat=True)
        )
        if not ids:
            return []
        Message.objects.filter(pk__in=ids).update(lease_until=lease_until)
    return list(
        Message.objects.filter(pk__in=ids)
        .select_related("subscription")
        .only(
            *[f.name for f in Message._meta.concrete_fields if f.name != "subscription"],
            "subscription__id",
            "subscription__token",
            "subscription__enabled",
        )
    )


def _send_group(application: Application, channel: str, messages: list[Message]):
    """Sends one (application, channel) group; returns one SendResult per message."""
    adapter = _get_adapter(channel)
    if adapter is None:
        return [
            SendResult(
                message_id=str(m.pk),
                ok=False,
                error_code="channel_unavailable",
                error_message=f"No adapter is configured for {channel}.",
                permanent=True,
            )
            for m in messages
        ]
    outbound = [
        OutboundMessage(
            message_id=str(m.pk),
            token=m.subscription.token,
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
        code, permanent = "credentials_invalid", True
        message = str(exc)
    except Exception as exc:  # an adapter bug must not lose the batch: retry it
        logger.exception("Adapter %s failed on a batch of %d", channel, len(messages))
        code, permanent = "adapter_error", False
        message = f"{type(exc).__name__}: {exc}"
    return [
        SendResult(
            message_id=str(m.pk),
            ok=False,
            error_code=code,
            error_message=message,
            permanent=permanent,
        )
        for m in messages
    ]


def deliver_batch(message_ids: Sequence[str], *, queue: str | None = None) -> BatchReport:
    """Sends the still-pending messages among `message_ids`; idempotent: messages already
    terminal, leased by another worker or scheduled for later are left alone."""
    now = timezone.now()
    messages = _claim(message_ids, now)
    if not messages:
        return BatchReport(claimed=0, outcomes=Counter())
    applications = {
        a.pk: a for a in Application.objects.filter(pk__in={m.application_id for m in messages})
    }
    results: dict[str, SendResult] = {}
    groups: dict[tuple, list[Message]] = defaultdict(list)
    for message in messages:
        if not message.subscription.enabled:
            results[str(message.pk)] = SendResult(
                message_id=str(message.pk),
                ok=False,
                error_code="subscription_disabled",
                error_message="The subscription was disabled before the message was sent.",
                permanent=True,
            )
        else:
            groups[(message.application_id, message.channel)].append(message)
    jobs = [(applications[app_id], channel, group) for (app_id, channel), group in groups.items()]
    if len(jobs) <= 1:  # none: every subscription was disabled, nothing goes out
        batches = [_send_group(*job) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            batches = list(pool.map(lambda job: _send_group(*job), jobs))
    for (_app, _channel, group), batch_results in zip(jobs, batches, strict=True):
        for message, result in zip(group, batch_results, strict=True):
            results[str(message.pk)] = result
    return _record(messages, results, timezone.now(), queue)


@dataclass
class _Outcome:
    """What a batch's results mean, worked out in memory before anything is written."""

    events: list[MessageEvent] = field(default_factory=list)
    dead_subscriptions: set = field(default_factory=set)
    retries: dict[tuple[str, int], list[Message]] = field(default_factory=lambda: defaultdict(list))
    retry_after: dict[tuple[str, int], float] = field(default_factory=lambda: defaultdict(float))
    outcomes: Counter = field(default_factory=Counter)
    transitions: Counter = field(default_factory=Counter)


def _apply_results(
    messages: list[Message], results: dict[str, SendResult], now: datetime, queue: str | None
) -> _Outcome:
    """Runs each message's transition (pure) and collects events, retries and counters."""
    max_attempts = settings.MESSAGE_MAX_ATTEMPTS
    out = _Outcome()
    for message in messages:
        result = results[str(message.pk)]
        message.lease_until = None
        if result.error_code != "subscription_disabled":
            message.attempts += 1
            out.events.append(
                MessageEvent(
                    message=message,
                    type=MessageEvent.Type.ATTEMPT,
                    at=now,
                    details=_attempt_details(message.attempts, result, queue),
                )
            )
        if result.ok:
            message.succeed()
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
                message.fail()
            elif message.attempts >= max_attempts:
                message.error_message = (
                    f"Gave up after {message.attempts} attempts; last: {message.error_message}"
                )
                message.fail()
            else:
                key = (RETRY_QUEUE, message.attempts)
                out.retries[key].append(message)
                out.retry_after[key] = max(out.retry_after[key], result.retry_after or 0.0)
                out.outcomes["retry"] += 1
                continue
        out.outcomes[message.status] += 1
        if message.campaign_run_id:
            out.transitions[(message.campaign_run_id, MessageStatus.PENDING, message.status)] += 1
        out.events.append(
            MessageEvent(
                message=message,
                type=MessageEvent.Type.STATUS,
                status=message.status,
                at=now,
                details={"error": message.error_code} if message.error_code else {},
            )
        )
    return out


def _record(
    messages: list[Message], results: dict[str, SendResult], now: datetime, queue: str | None
) -> BatchReport:
    with transaction.atomic():
        # Only rows still pending are written or counted: a message cancelled while it was
        # being sent stays cancelled, and campaign statistics count it once.
        still_pending = set(
            Message.objects.select_for_update()
            .filter(pk__in=[m.pk for m in messages], status=MessageStatus.PENDING)
            .values_list("pk", flat=True)
        )
        messages = [m for m in messages if m.pk in still_pending]
        out = _apply_results(messages, results, now, queue)
        delays = {key: retry_delay(key[1], out.retry_after[key]) for key in out.retries}
        for key, group in out.retries.items():
            for message in group:
                # Counted from the attempt, so the stale sweep leaves it alone until it is due.
                message.enqueued_at = now + timedelta(seconds=delays[key])
        _write_messages(messages)
        copy_models(out.events)
        if out.dead_subscriptions:
            _disable_dead(out.dead_subscriptions, now)
        notify_status_listeners(out.transitions)
        for key, group in out.retries.items():
            ids = [str(m.pk) for m in group]
            transaction.on_commit(
                lambda ids=ids, key=key: enqueue(key[0], ids, countdown=delays[key])
            )
    return BatchReport(claimed=len(messages), outcomes=out.outcomes)


_UPDATE_FROM_ARRAYS = """
UPDATE messaging_message AS m SET
    status = v.status, attempts = v.attempts, error_code = v.error_code,
    error_message = v.error_message, error_permanent = v.error_permanent,
    provider_id = v.provider_id, sent_at = v.sent_at, enqueued_at = v.enqueued_at,
    lease_until = NULL
FROM unnest(
    %s::uuid[], %s::varchar[], %s::smallint[], %s::varchar[], %s::text[], %s::boolean[],
    %s::varchar[], %s::timestamptz[], %s::timestamptz[]
) AS v(id, status, attempts, error_code, error_message, error_permanent, provider_id,
       sent_at, enqueued_at)
WHERE m.id = v.id
"""


def _write_messages(messages: list[Message]) -> None:
    """One UPDATE for the whole batch. On PostgreSQL the new values travel as one array per
    column (Django's bulk_update builds a CASE per row and column, which costs seconds per
    batch); elsewhere bulk_update does."""
    if not messages:
        return
    if connection.vendor != "postgresql":
        Message.objects.bulk_update(messages, _UPDATED_FIELDS)
        return
    columns = [[getattr(m, name) for m in messages] for name in ("pk", *_UPDATED_FIELDS[:-1])]
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_FROM_ARRAYS, columns)


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


def _disable_dead(subscription_ids: Iterable, now: datetime) -> None:
    ids = list(
        Subscription.objects.filter(pk__in=subscription_ids, enabled=True).values_list(
            "pk", flat=True
        )
    )
    Subscription.objects.filter(pk__in=ids).update(
        enabled=False, disabled_reason="token_invalid", updated_at=now
    )
    SubscriptionEvent.objects.bulk_create(
        SubscriptionEvent(
            subscription_id=pk,
            kind=SubscriptionEvent.Kind.DISABLED,
            actor="system:delivery",
            changes={"reason": "token_invalid"},
        )
        for pk in ids
    )


def notify_status_listeners(transitions: Counter) -> None:
    """Tells interested apps (campaign statistics) how many messages moved between which
    statuses, keyed (campaign_run_id, old, new), inside the transaction that wrote them. The
    listeners are named in settings, so messaging imports none of them."""
    if not transitions:
        return
    for path in settings.MESSAGE_STATUS_LISTENERS:
        import_string(path)(transitions)


# --- The stale-pending sweep ------------------------------------------------------------------


def pending_sweep(*, now: datetime | None = None, limit: int = 200_000) -> int:
    """Enqueues pending messages whose work never reached the broker (or was lost with a
    worker), and scheduled messages that are due. Returns how many it enqueued."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.MESSAGE_STALE_AFTER_SECONDS)
    candidates = (
        Message.objects.filter(status=MessageStatus.PENDING)
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale_before))
        .filter(Q(send_after__isnull=True) | Q(send_after__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    )
    size = settings.MESSAGE_BATCH_SIZE
    done = 0
    while done < limit:
        rows = list(candidates.values_list("pk", "priority")[:size])
        if not rows:
            break
        ids = [pk for pk, _ in rows]
        Message.objects.filter(pk__in=ids).update(enqueued_at=now)
        by_queue: dict[str, list[str]] = defaultdict(list)
        for pk, priority in rows:
            by_queue[QUEUE_FOR_PRIORITY.get(priority, "messages")].append(str(pk))
        for queue, queue_ids in by_queue.items():
            enqueue(queue, queue_ids)
        done += len(rows)
    if done:
        logger.info("Stale-pending sweep enqueued %d messages", done)
    return done
