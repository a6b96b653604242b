"""Writes of messages: accepting them (resolve the targets, count the quota, store one
pending message per subscription, hand them to delivery once the transaction commits), the
client's status reports, cancelling and sending again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_fsm import can_proceed

from accounts import audit
from accounts.models import Application
from accounts.quotas import quota_consume, quota_insert
from core import channels
from core.bulk import COPY_FROM_ROWS, copy_models, copy_rows
from core.channels import part_for, parts_check, rendered_urls_encoded
from core.exceptions import ContentInvalid, InvalidTransition, QuotaExceeded
from core.validation import MAX_JSON_BYTES, InputInvalid, check_json, text_problem
from templates_app.rendering import render
from templates_app.selectors import template_get

from .. import dispatch, rules
from ..ids import uuid7
from ..message_columns import INSERTED
from ..models import Message, MessageEvent, MessageStatus, Subscription
from ..selectors.subscriptions import subscription_targets
from ..signals import message_statuses_changed

# What one message may carry, whether written literally or rendered from a template.
MAX_TITLE_LENGTH = 1000
MAX_BODY_LENGTH = 4000
MAX_DATA_BYTES = MAX_JSON_BYTES
MAX_VARIABLES_BYTES = MAX_JSON_BYTES
# How far ahead `send_after` may be: scheduling further out is what campaigns are for.
SEND_AFTER_MAX_AHEAD = timedelta(days=30)
MAX_TTL = 28 * 24 * 3600  # seconds: the longest either provider keeps a message
# The message ids an audit row of a retry or cancel by hand names; its count says how many.
AUDITED_IDS = 100


@dataclass(frozen=True)
class Content:
    title: str = ""
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    template_version_id: Any = None
    # Per-channel parts, {"email": {...}, "sms": {...}} (core.channels); each message keeps
    # its own channel's.
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)


ContentFor = Callable[[Subscription], Content]


def rendered_content_check(content: Content, *, template_id) -> Content:
    """`content` rendered from template `template_id` if it keeps the limits of literal
    content; else InputInvalid naming the template and the field."""
    for name, text, limit in (
        ("title", content.title, MAX_TITLE_LENGTH),
        ("body", content.body, MAX_BODY_LENGTH),
    ):
        if len(text) > limit:
            raise InputInvalid(
                f"The rendered {name} of template {template_id} is {len(text)} characters; "
                f"the limit is {limit}.",
                field=name,
            )
        if problem := text_problem(text):
            raise InputInvalid(
                f"The rendered {name} of template {template_id} {problem}.", field=name
            )
    try:
        check_json(content.data, field="data", max_bytes=MAX_DATA_BYTES)
    except InputInvalid as exc:
        raise InputInvalid(
            f"The data rendered from template {template_id}: {exc.message}", field="data"
        ) from exc
    try:
        parts_check(content.parts)
    except InputInvalid as exc:
        raise InputInvalid(
            f"The {exc.field} rendered from template {template_id}: {exc.message}",
            field=exc.field,
        ) from exc
    return content


def render_content(version, variables: dict, language: str | None) -> Content:
    """One rendering of a template version as message content, checked against the limits
    of literal content (rendered_content_check); raises ContentInvalid, which the API, the
    admin and the fan-out all handle as the ApplicationError it is."""
    try:
        result = render(version, variables, language)
        return rendered_content_check(
            Content(
                title=result.title,
                body=result.body,
                data=result.data,
                template_version_id=version.pk,
                parts=rendered_urls_encoded(result.parts),
            ),
            template_id=version.template_id,
        )
    except InputInvalid as exc:
        raise ContentInvalid(exc.message, details=exc.errors) from exc


def rendered_content(version, variables: dict, language: str | None = None) -> ContentFor:
    """Content rendered from a template version: in `language` when given, else in each
    subscription's own language, falling back to the template's default. Renders once per
    language; content over the limits raises ContentInvalid (render_content)."""
    rendered: dict[str | None, Content] = {}

    def content_for(subscription: Subscription) -> Content:
        wanted = language or subscription.language or None
        if wanted not in rendered:
            rendered[wanted] = render_content(version, variables, wanted)
        return rendered[wanted]

    return content_for


@dataclass(frozen=True)
class Delivery:
    priority: str = Message.Priority.NORMAL
    ttl: int | None = None
    collapse_id: str = ""
    send_after: datetime | None = None


@dataclass(frozen=True)
class SendOutcome:
    messages: list[Message]
    skipped: int
    # reason -> count (rules.SKIP_REASONS), only the reasons that occurred.
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    created: int = 0
    # Of those created, how many wait for a later time (send_after ahead: scheduled, local
    # time or quiet hours).
    scheduled: int = 0


def _content_checked(
    application: Application, subscriptions: Iterable, content_for: ContentFor
) -> None:
    """Raises ContentInvalid when a message among them breaks its channel's content rule
    (ChannelSpec.content_check: an SMS text over the segment limit, a KakaoTalk message
    without an approved template...); each channel's rule runs once, over the distinct
    contents going to it, channels in the order of SPECS."""
    specs = channels.SPECS
    contents: dict[str, dict[int, Content]] = {}
    for s in subscriptions:
        spec = specs.get(s.type)
        if spec is not None and spec.content_check is not None:
            content = content_for(s)
            contents.setdefault(s.type, {})[id(content)] = content
    for channel, spec in specs.items():
        if channel in contents:
            try:
                spec.check_content(
                    application=application, contents=list(contents[channel].values())
                )
            except InputInvalid as exc:
                raise ContentInvalid(exc.message, details=exc.errors) from exc


def _message(*, content: Content, channel: str, **fields) -> Message:
    return Message(
        id=uuid7(),
        channel=channel,
        title=content.title,
        body=content.body,
        data=content.data,
        parts=part_for(channel, content.parts),
        template_version_id=content.template_version_id,
        **fields,
    )


_inserted = attrgetter(*INSERTED)
_inserted_from_dict = itemgetter(*INSERTED)
_ID = INSERTED.index("id")
_ENQUEUED_AT = INSERTED.index("enqueued_at")


def _held_events(held: dict, message_ids: dict, now: datetime) -> None:
    """A `held` event for each message the recipient's quiet hours hold (`held`: target pk
    -> until; `message_ids`: target pk -> message id)."""
    MessageEvent.objects.bulk_create(
        MessageEvent(
            message_id=message_ids[pk],
            type=MessageEvent.Type.HELD,
            at=now,
            details={"reason": rules.QUIET_HOURS, "until": until.isoformat()},
        )
        for pk, until in held.items()
        if pk in message_ids
    )


def message_send(
    *,
    application: Application,
    subscriptions: Sequence[Subscription],
    content: Content | ContentFor,
    delivery: Delivery,
    skipped: int = 0,
    campaign_id=None,
    campaign_run_id=None,
    queue: str | None = None,
    return_messages: bool = True,
    send_rules: rules.Rules | None = None,
    send_after_for: Callable[[Any], datetime | None] | None = None,
    fallback_of=None,
) -> SendOutcome:
    """Stores one pending message per subscription (counting the quota) and enqueues them
    after commit; scheduled ones are left to the sweep, which sends them when due. Each
    message keeps its own channel's part of the content. Content that breaks its channel's
    rule (an SMS text over the segment limit, ...) raises ContentInvalid, storing nothing.

    `send_rules` (rules.rules_for) is the send's category: stored on each message, and when
    it is not required the recipients' rules run first (rules.rules_apply), leaving targets
    out (counted by reason in the outcome with the `skipped` disabled ones) or holding them
    until their quiet hours end. `send_after_for(subscription)` gives each target its own
    time (local-time delivery) instead of `delivery.send_after`. `fallback_of` is the
    message of the previous hop of a fallback chain.

    With return_messages=False (a campaign's fan-out) no model instances are made: the rows
    go straight to COPY, and the outcome lists no messages."""
    now = timezone.now()
    by_reason: Counter = Counter({rules.DISABLED: skipped} if skipped else {})
    held: dict = {}
    applies = send_rules is not None and send_rules.applies
    # With the rules, their cap slots and the messages commit or roll back together.
    with transaction.atomic() if applies else nullcontext():
        if applies:
            decision = rules.rules_apply(
                application=application,
                rules=send_rules,
                targets=subscriptions,
                now=now,
                send_after_for=send_after_for or (lambda _s: delivery.send_after),
            )
            by_reason.update(decision.skipped)
            held, subscriptions = decision.held, decision.kept
        return _messages_store(
            application=application,
            subscriptions=subscriptions,
            content=content,
            delivery=delivery,
            now=now,
            by_reason=by_reason,
            held=held,
            campaign_id=campaign_id,
            campaign_run_id=campaign_run_id,
            queue=queue,
            return_messages=return_messages,
            category=send_rules.category if send_rules is not None else "",
            send_after_for=send_after_for,
            fallback_of=fallback_of,
        )


def _messages_store(
    *,
    application: Application,
    subscriptions: Sequence,
    content: Content | ContentFor,
    delivery: Delivery,
    now: datetime,
    by_reason: Counter,
    held: dict,
    campaign_id,
    campaign_run_id,
    queue: str | None,
    return_messages: bool,
    category: str,
    send_after_for: Callable[[Any], datetime | None] | None,
    fallback_of,
) -> SendOutcome:
    """message_send's writes, for the targets the rules kept (`held`: target pk -> the end
    of its quiet hours)."""
    content_for = content if callable(content) else (lambda _subscription: content)
    _content_checked(application, subscriptions, content_for)
    per_target = bool(held) or send_after_for is not None

    def send_after_of(s) -> datetime | None:
        if s.pk in held:
            return held[s.pk]
        return send_after_for(s) if send_after_for is not None else delivery.send_after

    uniform_scheduled = delivery.send_after is not None and delivery.send_after > now
    target = queue or dispatch.queue_for(delivery.priority)
    outcome = dict(
        skipped=sum(by_reason.values()), skipped_by_reason=dict(by_reason),
        created=len(subscriptions),
    )  # fmt: skip
    messages = []
    for s in subscriptions if return_messages else ():
        send_after = send_after_of(s) if per_target else delivery.send_after
        messages.append(
            _message(
                application=application,
                subscription_id=s.pk,
                channel=s.type,
                campaign_id=campaign_id,
                campaign_run_id=campaign_run_id,
                content=content_for(s),
                priority=delivery.priority,
                ttl=delivery.ttl,
                collapse_id=delivery.collapse_id,
                send_after=send_after,
                enqueued_at=None if send_after is not None and send_after > now else now,
                created_at=now,
                category=category,
                fallback_of=fallback_of,
            )
        )
    if messages and connection.vendor == "postgresql" and len(messages) < COPY_FROM_ROWS:
        # The API's usual send (a few targets): the messages and their quota in one statement.
        rows_ = [_inserted(m) for m in messages]
        with transaction.atomic() if held else nullcontext():
            quota_insert(application=application, model=Message, columns=INSERTED, rows=rows_)
            if held:
                _held_events(held, {m.subscription_id: m.pk for m in messages}, now)
        for m in messages:  # saved, as bulk_create leaves them
            m._state.adding, m._state.db = False, connection.alias
        ids = [str(m.pk) for m in messages if m.enqueued_at is not None]
        if ids:
            transaction.on_commit(lambda: dispatch.enqueue(target, ids))
        return SendOutcome(messages=messages, scheduled=len(messages) - len(ids), **outcome)
    with transaction.atomic():
        if return_messages:
            copy_models(messages)
            rows = [_inserted(m) for m in messages]
        else:
            # The batch's columns, then each message's own, by name.
            batch = {
                "application_id": application.pk, "campaign_id": campaign_id,
                "campaign_run_id": campaign_run_id, "priority": delivery.priority,
                "ttl": delivery.ttl, "collapse_id": delivery.collapse_id,
                "send_after": delivery.send_after, "status": MessageStatus.PENDING.value,
                "attempts": 0, "error_code": "", "error_message": "", "error_permanent": None,
                "provider_id": "", "created_at": now, "sent_at": None,
                "enqueued_at": None if uniform_scheduled else now, "category": category,
                "fallback_of": fallback_of,
            }  # fmt: skip
            rows = []
            for s in subscriptions:
                c = content_for(s)
                row = batch | {
                    "id": uuid7(), "subscription_id": s.pk, "channel": s.type,
                    "title": c.title, "body": c.body, "data": c.data,
                    "parts": part_for(s.type, c.parts),
                    "template_version_id": c.template_version_id,
                }  # fmt: skip
                if per_target:
                    send_after = send_after_of(s)
                    scheduled = send_after is not None and send_after > now
                    row |= {"send_after": send_after, "enqueued_at": None if scheduled else now}
                rows.append(_inserted_from_dict(row))
            copy_rows(Message, INSERTED, rows)
        if held:
            _held_events(
                held, {row[INSERTED.index("subscription_id")]: row[_ID] for row in rows}, now
            )
        ids = [str(row[_ID]) for row in rows if row[_ENQUEUED_AT] is not None]
        # Last, so the quota row stays locked only until the commit.
        quota_consume(application=application, count=len(rows))
        if ids:
            transaction.on_commit(lambda: dispatch.enqueue(target, ids))
    return SendOutcome(messages=messages, scheduled=len(rows) - len(ids), **outcome)


def message_create(
    *,
    application: Application,
    subscription_id=None,
    subscription_ids: Sequence | None = None,
    external_user_id: str | None = None,
    channels: Sequence[str] | None = None,
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
) -> SendOutcome:
    """One request's messages (POST /messages): to one target form (a subscription, a list,
    or a user's subscriptions), with literal content or a template's, sent through
    message_send. `category` (else the template's) is the messages' category: an unknown
    key raises InputInvalid, and the recipients' rules apply (rules.rules_apply)."""
    targets, skipped = subscription_targets(
        application=application,
        subscription_id=subscription_id,
        subscription_ids=subscription_ids,
        external_user_id=external_user_id,
        channels=channels,
    )
    if template_id is not None:
        version = template_get(application=application, template_id=template_id)
        content = rendered_content(version, variables or {}, language)
        if category is None:
            category = version.template.category
    else:
        content = Content(title=title, body=body, data=data or {}, parts=parts or {})
    return message_send(
        application=application,
        subscriptions=targets,
        skipped=skipped,
        content=content,
        delivery=Delivery(
            priority=priority, ttl=ttl, collapse_id=collapse_id, send_after=send_after
        ),
        send_rules=rules.rules_for(application=application, category=category),
    )


_CLIENT_TRANSITIONS = {
    MessageStatus.RECEIVED: "receive",
    MessageStatus.CONVERTED: "convert",
}


def message_report_status(*, message: Message, status: str, actor: str) -> Message:
    """The client's report that a message was received or converted. Repeating the current
    status is a no-op; a transition the state machine refuses raises InvalidTransition."""
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.status == status:
            return message
        transition = getattr(message, _CLIENT_TRANSITIONS[status])
        if not can_proceed(transition):
            raise InvalidTransition(
                f"A message in status {message.status!r} cannot become {status!r}.",
                details={"status": message.status, "requested": status},
            )
        old = message.status
        transition()
        message.save(update_fields=["status"])
        MessageEvent.objects.create(
            message=message,
            type=MessageEvent.Type.STATUS,
            status=status,
            at=timezone.now(),
            details={"actor": actor},
        )
        if message.campaign_run_id:
            message_statuses_changed.send(
                sender=Message, transitions=Counter({(message.campaign_run_id, old, status): 1})
            )
    return message


def messages_cancel(
    *, message_ids: Iterable, actor: str, chunk: int = 5000, by_hand: bool = False
) -> int:
    """Cancels the pending messages among `message_ids`, in chunks; returns how many.
    `by_hand` (the admin's action): one MESSAGES_CANCELLED audit row per application after
    the last chunk, with the count and the first AUDITED_IDS ids (a campaign's cancel is
    audited as the campaign's).

    A message a worker is sending at this moment is left alone: the worker's claim holds
    its row lock until it records the outcome (delivery.claim), and the cancel skips locked
    rows (SKIP LOCKED) rather than wait for the send or cancel what is reaching the device.
    Such a message ends as the send says: sent, failed, or pending again for a retry (a
    second cancel catches that one). Campaign run counters move with the statuses
    (message_statuses_changed)."""
    pending = Message.objects.filter(pk__in=message_ids, status=MessageStatus.PENDING)
    done = 0
    cancelled: dict[Any, list] = {}  # application id -> the ids cancelled
    while True:
        with transaction.atomic():
            rows = list(
                pending.select_for_update(skip_locked=True).values_list(
                    "pk", "campaign_run_id", "application_id"
                )[:chunk]
            )
            if not rows:
                if by_hand:
                    _audit_by_hand(audit.MESSAGES_CANCELLED, actor, cancelled)
                return done
            ids = [pk for pk, _, _ in rows]
            if by_hand:
                for pk, _, application_id in rows:
                    cancelled.setdefault(application_id, []).append(pk)
            Message.objects.filter(pk__in=ids, status=MessageStatus.PENDING).update(
                status=MessageStatus.CANCELLED
            )
            now = timezone.now()
            MessageEvent.objects.bulk_create(
                MessageEvent(
                    message_id=pk,
                    type=MessageEvent.Type.STATUS,
                    status=MessageStatus.CANCELLED,
                    at=now,
                    details={"actor": actor},
                )
                for pk in ids
            )
            transitions = Counter(
                (run_id, MessageStatus.PENDING, MessageStatus.CANCELLED)
                for _, run_id, _ in rows
                if run_id
            )
            if transitions:
                message_statuses_changed.send(sender=Message, transitions=transitions)
        done += len(rows)


def _retry_refusal(message: Message) -> InvalidTransition | None:
    """Why `message` (locked) cannot be sent again, or None: only a failed message is, to an
    enabled subscription, and only once (a retry that fails is retried in its turn)."""
    if message.status != MessageStatus.FAILED:
        return InvalidTransition(
            f"A {message.status} message cannot be retried; only a failed one can.",
            details={"status": message.status},
        )
    enabled = (
        Subscription.objects.filter(pk=message.subscription_id)
        .values_list("enabled", flat=True)
        .first()
    )
    if not enabled:
        return InvalidTransition(
            "The message's subscription is disabled or deleted; it is not sent to.",
            details={"status": message.status, "subscription_enabled": False},
        )
    retried_by = Message.objects.filter(retry_of=message.pk).values_list("pk", flat=True).first()
    if retried_by is not None:
        return InvalidTransition(
            f"The message was already retried as {retried_by}.",
            details={"status": message.status, "retried_by": str(retried_by)},
        )
    return None


def _audit_by_hand(action: str, actor: str, ids_by_application: dict) -> None:
    """One audit row per application: how many messages, and the first AUDITED_IDS ids."""
    with transaction.atomic():
        for application_id, ids in ids_by_application.items():
            audit.audit_record(
                application_id=application_id,
                actor=actor,
                action=action,
                object_type="message",
                object_id=ids[0] if len(ids) == 1 else "",
                details={"count": len(ids), "message_ids": [str(pk) for pk in ids[:AUDITED_IDS]]},
            )


def message_retry(*, message: Message, actor: str) -> Message:
    """Sends a failed message again: a new pending message to the same subscription with
    the same content and delivery options, `retry_of` the failed one, counted against the
    quota and handed to delivery after commit like any single send. A message that is not
    failed, whose subscription is disabled, or that was retried already raises
    InvalidTransition. Audited as MESSAGES_RETRIED (the failed message's id).

    The new message keeps campaign_id (it is the campaign's content, and lists by campaign
    find it) but not campaign_run_id: the run's counters and its one message per
    subscription stay as the run made them."""
    with transaction.atomic():
        retry = _message_retry(message=message, actor=actor)
        _audit_by_hand(audit.MESSAGES_RETRIED, actor, {message.application_id: [message.pk]})
    return retry


@dataclass
class RetryOutcome:
    retried: int = 0
    refused: int = 0  # not failed, to a disabled subscription, or retried already
    quota_exceeded: QuotaExceeded | None = None  # the retries stopped there


def messages_retry(*, messages: Iterable[Message], actor: str) -> RetryOutcome:
    """message_retry for each of `messages` (the admin's action), each in its own
    transaction so the quota row is never held across them, stopping at the first
    QuotaExceeded. One MESSAGES_RETRIED audit row per application records the lot (count,
    first AUDITED_IDS ids); every new message's event names the actor as well."""
    outcome, retried = RetryOutcome(), {}
    try:
        for message in messages:
            try:
                with transaction.atomic():
                    _message_retry(message=message, actor=actor)
            except InvalidTransition:
                outcome.refused += 1
            except QuotaExceeded as exc:
                outcome.quota_exceeded = exc
                break
            else:
                outcome.retried += 1
                retried.setdefault(message.application_id, []).append(message.pk)
    finally:
        if retried:
            _audit_by_hand(audit.MESSAGES_RETRIED, actor, retried)
    return outcome


def _message_retry(*, message: Message, actor: str) -> Message:
    """message_retry's work, in the caller's transaction."""
    # Serializes retries of one message: the second finds the first's retry.
    original = Message.objects.select_for_update().get(pk=message.pk)
    if (refusal := _retry_refusal(original)) is not None:
        raise refusal
    now = timezone.now()
    retry = Message(
        id=uuid7(),
        application_id=original.application_id,
        subscription_id=original.subscription_id,
        channel=original.channel,
        campaign_id=original.campaign_id,
        title=original.title,
        body=original.body,
        data=original.data,
        parts=original.parts,
        template_version_id=original.template_version_id,
        priority=original.priority,
        ttl=original.ttl,
        collapse_id=original.collapse_id,
        category=original.category,
        retry_of=original.pk,
        enqueued_at=now,
    )
    retry.save(force_insert=True)
    MessageEvent.objects.create(
        message=retry,
        type=MessageEvent.Type.STATUS,
        status=MessageStatus.PENDING,
        at=now,
        details={"actor": actor, "retry_of": str(original.pk)},
    )
    # Last, so the quota row stays locked only until the commit.
    quota_consume(application=message.application, count=1)
    queue, ids = dispatch.queue_for(retry.priority), [str(retry.pk)]
    transaction.on_commit(lambda: dispatch.enqueue(queue, ids))
    return retry


def messages_requeue(*, message_ids: Iterable) -> int:
    """Hands the pending, due messages among `message_ids` to delivery again now."""
    now = timezone.now()
    rows = list(
        Message.objects.filter(pk__in=message_ids, status=MessageStatus.PENDING)
        .filter(Q(send_after__isnull=True) | Q(send_after__lte=now))
        .values_list("pk", "priority")
    )
    dispatch.hand_over(rows, now)
    return len(rows)
