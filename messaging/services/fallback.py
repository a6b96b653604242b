"""Fallback across channels: one send to a user that tries its subscription types in turn
(POST /messages with `"fallback": {"order": [...], "after_seconds": N}`).

A chain (FallbackChain) sends its first hop to the user's enabled subscriptions of the first
type in `order` whose channel is ready (the application has its credentials) and that the
user has. When that hop's messages have all failed, or none of them is `received` (or
`converted`) within `after_seconds` of the hop going out, the next such type gets a hop whose
messages name the previous hop's first message in `fallback_of`; the chain ends at the first
receipt (`received`), or when no type is left (`exhausted`), or when the next hop cannot be
made (`stopped`: the quota is used up, the category was deleted, the messages are gone).

What counts as received is the message's status, however it got there: the app's `PUT
/messages/{id}/status` (`received` or `converted`), an inbox item read, an SMS gateway's
`delivered` callback, a KakaoTalk `delivered` result (or its SMS resend delivered)
(services.reports). Push and e-mail providers say only that they accepted a message
(`successful`), which is not a receipt: such a hop waits its `after_seconds` unless the app
reports one.

The chain is state in the database, not a sleeping task. Beat's tick (`fallback_advance`,
every FALLBACK_INTERVAL_SECONDS) reads the open chains whose `due_at` has come through a
partial index, locked with SKIP LOCKED in bounded batches, looks at their current hop's
messages (one query per batch) and moves each: a new hop is made by message_send in the
transaction that records it on the chain, and handed to delivery after that commit, so a
crash rolls both back together (the next tick does it again) and a committed hop is never
made twice; work the broker lost is found by the stale-pending sweep as any message's.

`due_at` is when a chain is next looked at, not only its deadline: a new hop is due at once
(the next tick sees a message that failed at its first attempt), a hop still pending is looked
at again after an interval that grows with its age, a hop one of whose messages was sent
(`successful`: it can no longer fail) waits for its deadline. No work is added to sending or
to receipts; each tick reads only the chains that are due. The recipients' rules (category,
opt-outs, frequency cap, quiet hours) apply to every hop as message_send applies them; a
type whose targets the rules all leave out is passed over. A hop held by quiet hours starts
its `after_seconds` when it goes out.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Application
from accounts.selectors import channels_ready_of
from core import channels
from core.exceptions import ContentInvalid, NotFound, QuotaExceeded
from core.validation import InputInvalid
from templates_app.rendering import compiled
from templates_app.selectors import template_get

from .. import rules
from ..models import FallbackChain, Message, MessageStatus, Subscription, User
from .messages import (
    Content,
    ContentFor,
    Delivery,
    SendOutcome,
    message_send,
    render_content,
    rendered_content,
)

logger = structlog.get_logger(__name__)

# The longest `after_seconds`; the shortest is settings.FALLBACK_MIN_AFTER_SECONDS.
MAX_AFTER_SECONDS = 7 * 24 * 3600
# Chains per transaction of the tick, and how long one tick goes on while chains are due.
ADVANCE_BATCH = 100
ADVANCE_BUDGET_SECONDS = 20.0
# A hop whose messages are still pending is looked at again after half its age, within
# these bounds (the lower one is the tick's interval).
RECHECK_MAX_SECONDS = 60.0

Status = FallbackChain.Status
# How a hop ended (FallbackChain.hops[...]["ended"]).
RECEIVED, FAILED, NOT_RECEIVED = "received", "failed", "not_received"
LEFT_OUT, CONTENT_INVALID, CANCELLED = "left_out", "content_invalid", "cancelled"
STOPPED = "stopped"
# Why a chain stopped (FallbackChain.reason).
QUOTA_EXCEEDED, CATEGORY_DELETED, MESSAGES_DELETED = (
    "quota_exceeded",
    "category_deleted",
    "messages_deleted",
)

_RECEIVED = frozenset({MessageStatus.RECEIVED, MessageStatus.CONVERTED})
_ALIVE = frozenset({MessageStatus.PENDING, MessageStatus.SUCCESSFUL})
_TARGET_COLUMNS = ("id", "type", "enabled", "language", "user_id")


@dataclass(frozen=True)
class FallbackOutcome(SendOutcome):
    """message_send's outcome for the first hop, and the chain (None when no type in the
    order could be sent to: no chain is stored then)."""

    chain: FallbackChain | None = None


# --- Starting a chain ----------------------------------------------------------------------------


def fallback_create(
    *,
    application: Application,
    external_user_id: str,
    fallback: dict[str, Any],
    title: str = "",
    body: str = "",
    data: dict[str, Any] | None = None,
    parts: dict[str, dict[str, Any]] | None = None,
    template_id=None,
    variables: dict[str, Any] | None = None,
    language: str | None = None,
    priority: str = Message.Priority.NORMAL,
    ttl: int | None = None,
    collapse_id: str = "",
    send_after: datetime | None = None,
    category: str | None = None,
) -> FallbackOutcome:
    """POST /messages with `fallback`: checks the content for every channel of
    `fallback["order"]` (so that no later hop is refused for it), sends the first hop and
    stores the chain, in one transaction. A user that does not exist raises NotFound; an
    unknown category InputInvalid; content a channel of the order cannot send
    ContentInvalid."""
    order: list[str] = list(fallback["order"])
    user_id = (
        User.objects.filter(application=application, external_user_id=external_user_id)
        .values_list("pk", flat=True)
        .first()
    )
    if user_id is None:
        raise NotFound(f"No user with external_user_id {external_user_id!r}.")
    chain = FallbackChain(
        application=application,
        user_id=user_id,
        order=order,
        after_seconds=fallback["after_seconds"],
        variables=variables or {},
        language=language or "",
        priority=priority,
        ttl=ttl,
        collapse_id=collapse_id,
    )
    if template_id is not None:
        version = template_get(application=application, template_id=template_id)
        chain.template_version = version
        if category is None:
            category = version.template.category
        languages = [language] if language else list(compiled(version).contents)
        checked = [render_content(version, chain.variables, lang) for lang in languages]
    else:
        chain.title, chain.body, chain.data, chain.parts = title, body, data or {}, parts or {}
        checked = [_content(chain)]
    chain.category = category or ""
    send_rules = rules.rules_for(application=application, category=category)
    _order_content_check(application, order, checked)
    now = timezone.now()
    with transaction.atomic():
        targets = _targets(user_id, order)
        disabled = sum(1 for s in targets if not s.enabled)
        hop, by_reason = _hop_send(
            chain,
            targets=[s for s in targets if s.enabled],
            start=0,
            now=now,
            send_rules=send_rules,
            send_after=send_after,
            fallback_of=None,
        )
        if disabled:
            by_reason[rules.DISABLED] += disabled
        skipped = {reason: n for reason, n in by_reason.items() if n}
        if hop is None:
            return FallbackOutcome(
                messages=[], skipped=sum(skipped.values()), skipped_by_reason=skipped
            )
        chain.save(force_insert=True)
    return FallbackOutcome(
        messages=hop.messages,
        skipped=sum(skipped.values()),
        skipped_by_reason=skipped,
        created=hop.created,
        scheduled=hop.scheduled,
        chain=chain,
    )


def _order_content_check(
    application: Application, order: Sequence[str], contents: list[Content]
) -> None:
    """Each channel of the order's content rule (ChannelSpec.content_check) over the
    contents every hop may send; raises ContentInvalid as a send to that channel would."""
    for channel in order:
        spec = channels.SPECS[channel]
        if spec.content_check is None:
            continue
        try:
            spec.check_content(application=application, contents=contents)
        except InputInvalid as exc:
            raise ContentInvalid(exc.message, details=exc.errors) from exc


# --- Hops --------------------------------------------------------------------------------------


def _content(chain: FallbackChain) -> Content | ContentFor:
    """What each hop sends: the literal content, or the template version rendered in each
    subscription's language (or the chain's)."""
    if chain.template_version_id is not None:
        return rendered_content(chain.template_version, chain.variables, chain.language or None)
    return Content(title=chain.title, body=chain.body, data=chain.data, parts=chain.parts)


def _targets(user_id, order: Sequence[str]) -> list[Subscription]:
    """The user's subscriptions of the order's types (enabled or not)."""
    return list(
        Subscription.objects.filter(user_id=user_id, type__in=list(order)).only(*_TARGET_COLUMNS)
    )


def _hop_send(
    chain: FallbackChain,
    *,
    targets: list[Subscription],
    start: int,
    now: datetime,
    send_rules: rules.Rules | None,
    send_after: datetime | None,
    fallback_of,
) -> tuple[SendOutcome | None, Counter]:
    """Sends the next hop: to the first type of the order from `start` on whose channel is
    ready and among whose enabled `targets` the recipient's rules keep one; records it on the
    chain (position, messages, deadline, due). Types whose targets the rules all leave out,
    or whose content the channel refuses, are recorded as passed over. Returns the hop's
    outcome (None when no type is left) and the targets left out by reason."""
    ready = channels_ready_of(application_id=chain.application_id)
    by_type: dict[str, list[Subscription]] = {}
    for s in targets:
        by_type.setdefault(s.type, []).append(s)
    skipped: Counter = Counter()
    for position in range(start, len(chain.order)):
        channel = chain.order[position]
        if not ready.get(channel) or not by_type.get(channel):
            continue
        try:
            with transaction.atomic():
                outcome = message_send(
                    application=chain.application,
                    subscriptions=by_type[channel],
                    content=_content(chain),
                    delivery=Delivery(
                        priority=chain.priority,
                        ttl=chain.ttl,
                        collapse_id=chain.collapse_id,
                        send_after=send_after,
                    ),
                    send_rules=send_rules,
                    fallback_of=fallback_of,
                )
        except ContentInvalid as exc:
            chain.hops.append(_hop(channel, [], now, ended=CONTENT_INVALID, detail=exc.message))
            continue
        skipped.update(outcome.skipped_by_reason)
        if not outcome.messages:
            chain.hops.append(_hop(channel, [], now, ended=LEFT_OUT))
            continue
        ids = [str(m.pk) for m in outcome.messages]
        # The hop goes out when its first message does (quiet hours may hold them all).
        goes_at = max(now, min(m.send_after or now for m in outcome.messages))
        chain.position = position
        chain.message_ids = ids
        chain.hops.append(_hop(channel, ids, now))
        chain.deadline_at = goes_at + timedelta(seconds=chain.after_seconds)
        chain.due_at = goes_at
        return outcome, skipped
    return None, skipped


def _hop(channel: str, ids: list[str], now: datetime, ended=None, detail: str = "") -> dict:
    hop = {"channel": channel, "messages": ids, "at": now.isoformat(), "ended": ended}
    if detail:
        hop["detail"] = detail
    return hop


def _close(chain: FallbackChain, status: str, now: datetime, reason: str = "") -> None:
    chain.status, chain.reason = status, reason
    chain.closed_at, chain.due_at = now, None


# --- The tick ----------------------------------------------------------------------------------


def fallback_advance(*, now: datetime | None = None, batch: int = ADVANCE_BATCH) -> Counter:
    """Beat's tick: moves the open chains that are due, `batch` per transaction, until none
    is left or ADVANCE_BUDGET_SECONDS are spent (the next tick continues). Returns counts by
    what was done: `advanced`, `received`, `exhausted`, `stopped`, `waiting`."""
    counts: Counter = Counter()
    started = time.monotonic()
    while True:
        moved = _advance_batch(now or timezone.now(), batch, counts)
        if moved < batch or time.monotonic() - started >= ADVANCE_BUDGET_SECONDS:
            break
    if any(counts[k] for k in counts if k != "waiting"):
        logger.info("fallback_advance", **counts)
    return counts


def _advance_batch(now: datetime, batch: int, counts: Counter) -> int:
    """One transaction: up to `batch` due chains, locked (SKIP LOCKED: another tick's are
    left to it), and their current messages' statuses in one query."""
    with transaction.atomic():
        chains = list(
            FallbackChain.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("application", "template_version")
            .filter(status=Status.OPEN, due_at__lte=now)
            .order_by("due_at")[:batch]
        )
        if not chains:
            return 0
        ids = {pk for chain in chains for pk in chain.message_ids}
        current = {
            str(pk): (status, send_after)
            for pk, status, send_after in Message.objects.filter(pk__in=ids).values_list(
                "pk", "status", "send_after"
            )
        }
        for chain in chains:
            counts[_chain_step(chain, current, now)] += 1
    return len(chains)


def _chain_step(chain: FallbackChain, current: dict, now: datetime) -> str:
    """Looks at one due chain's current hop and moves the chain; returns what it did."""
    states = [current[pk] for pk in chain.message_ids if pk in current]
    statuses = {status for status, _send_after in states}
    hop = chain.hops[-1]
    if statuses & _RECEIVED:
        hop["ended"] = RECEIVED
        _close(chain, Status.RECEIVED, now)
        chain.save()
        return "received"
    if not states:
        hop["ended"] = STOPPED
        _close(chain, Status.STOPPED, now, MESSAGES_DELETED)
        chain.save()
        return "stopped"
    if not statuses & _ALIVE:
        if statuses == {MessageStatus.CANCELLED}:
            hop["ended"] = CANCELLED
            _close(chain, Status.STOPPED, now, CANCELLED)
            chain.save()
            return "stopped"
        ended = FAILED
    elif now >= chain.deadline_at:
        ended = NOT_RECEIVED
    else:
        chain.due_at = _next_look(chain, states, statuses, now)
        chain.save(update_fields=["due_at", "updated_at"])
        return "waiting"
    hop["ended"] = ended
    return _advance(chain, now)


def _next_look(chain: FallbackChain, states: list, statuses: set, now: datetime) -> datetime:
    """When to look at a waiting hop again: at its deadline once a message was sent (it can
    no longer fail), else after an interval growing with the hop's age, and not before a
    held message goes out."""
    if MessageStatus.SUCCESSFUL in statuses:
        return chain.deadline_at
    age = (now - datetime.fromisoformat(chain.hops[-1]["at"])).total_seconds()
    interval = max(settings.FALLBACK_INTERVAL_SECONDS, min(RECHECK_MAX_SECONDS, age / 2))
    look = now + timedelta(seconds=interval)
    held = [
        send_after
        for status, send_after in states
        if status == MessageStatus.PENDING and send_after is not None and send_after > look
    ]
    if held:
        look = min(held)
    return min(look, chain.deadline_at)


def _advance(chain: FallbackChain, now: datetime) -> str:
    """The next hop of a chain whose current hop failed or went unreceived, in a savepoint:
    a hop that cannot be made (quota, a deleted category) rolls back alone and stops the
    chain."""
    lead = chain.message_ids[0]
    try:
        with transaction.atomic():
            send_rules = rules.rules_for(
                application=chain.application, category=chain.category or None
            )
            remaining = chain.order[chain.position + 1 :]
            targets = [s for s in _targets(chain.user_id, remaining) if s.enabled]
            hop, _skipped = _hop_send(
                chain,
                targets=targets,
                start=chain.position + 1,
                now=now,
                send_rules=send_rules,
                send_after=None,
                fallback_of=lead,
            )
    except QuotaExceeded:
        _close(chain, Status.STOPPED, now, QUOTA_EXCEEDED)
    except InputInvalid:  # rules_for: the category is gone
        _close(chain, Status.STOPPED, now, CATEGORY_DELETED)
    else:
        if hop is None:
            _close(chain, Status.EXHAUSTED, now)
    chain.save()
    return "advanced" if chain.status == Status.OPEN else str(chain.status)
