"""What providers report about messages after sending: an SMS gateway's status callbacks, and
the KakaoTalk dealer's results, which the service polls.

`delivered` moves a successful message to `received` (the provider saw it reach the handset);
other reports (`undelivered`, `failed`, `sent`, ...) are recorded as `report` events with the
provider's own code, and leave the status as it is: the message was accepted by the provider,
and what happened later is history, not a new outcome.

KakaoTalk results (KakaoAdapter.results) are read per application for a window of update
times; windows overlap (the dealer's dates have minutes only), and a result already recorded
on its message is not recorded twice. A result the dealer resent as a text message records the
resend's status, and moves the message to `received` once the resend was delivered; "not a
KakaoTalk user" with nothing resent in its place disables the subscription (`token_invalid`),
as a dead token does."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import Application
from adapters import registry
from core.channels import KAKAOTALK
from core.exceptions import InvalidTransition
from templates_app.kakao import kakao_credentials

from ..models import Message, MessageEvent, MessageStatus
from .messages import message_report_status
from .subscriptions import TOKEN_INVALID, subscriptions_disable

SMS_PROVIDER = "provider:sms"
KAKAO_PROVIDER = "provider:kakao"


def message_provider_report(
    *,
    message: Message,
    status: str,
    details: dict,
    provider: str = SMS_PROVIDER,
    received: bool | None = None,
) -> Message:
    """Records one provider report on a message (see the module docstring). `provider` is
    the actor the report is recorded under (`provider:sms`, `provider:kakao`); `received`
    whether the report means the message reached the recipient (by default: `delivered`)."""
    MessageEvent.objects.create(
        message=message,
        type=MessageEvent.Type.REPORT,
        status="",
        at=timezone.now(),
        details={"provider_status": status, **details},
    )
    if status == "delivered" if received is None else received:
        # Already converted, or failed meanwhile: the report stays an event. The service locks
        # the row, so a report that outruns the worker's commit waits for it.
        with contextlib.suppress(InvalidTransition):
            message = message_report_status(
                message=message, status=MessageStatus.RECEIVED, actor=provider
            )
    return message


# --- KakaoTalk results -------------------------------------------------------------------------

# The dealer's result code that says the number is not a KakaoTalk user, for results that do
# not say `token_invalid` themselves (KakaoAdapter's do, from its error table).
KAKAO_NOT_A_USER = frozenset({"3019"})
# Resend (SMS fallback) statuses: RSC04 the SMS was delivered, RSC05 it failed.
RESEND_DELIVERED = "RSC04"
RESEND_FAILED = "RSC05"
RESEND_DONE = frozenset({RESEND_DELIVERED, RESEND_FAILED})
_WATERMARK = "kakao-results:{}"
_POLLING = "kakao-results-polling:{}"


def _not_a_user(result: Mapping[str, Any]) -> bool:
    """Whether a failed result says the number cannot get AlimTalk and no SMS went instead:
    as the adapter judged it (`token_invalid`, by its error table), else by the code."""
    if "token_invalid" in result:
        return bool(result["token_invalid"])
    return result.get("outcome") == "failed" and str(result.get("code")) in KAKAO_NOT_A_USER


def _results_window(application_id, now: datetime) -> tuple[datetime, datetime]:
    mark = cache.get(_WATERMARK.format(application_id))
    overlap = timedelta(seconds=settings.KAKAO_RESULTS_OVERLAP_SECONDS)
    if mark is None:
        return now - timedelta(seconds=settings.KAKAO_RESULTS_FIRST_LOOKBACK_SECONDS), now
    return datetime.fromisoformat(mark) - overlap, now


def _message_id(result: Mapping[str, Any]) -> str | None:
    details = result.get("details") or {}
    return result.get("message_id") or details.get("recipientGroupingKey") or None


def _matched(
    application_id, results: list[Mapping[str, Any]], since: datetime
) -> dict[int, Message]:
    """Our message of each result (by index): by the message id the request carried
    (recipientGroupingKey), else by the dealer's `requestId:recipientSeq` among the
    application's KakaoTalk messages made since a while before the window (the messages'
    table has no index on provider ids: one would cost every send its heap-only update)."""
    by_id, by_provider = {}, {}
    for index, result in enumerate(results):
        if (message_id := _message_id(result)) is not None:
            by_id[index] = str(message_id)
        elif result.get("provider_id"):
            by_provider[index] = str(result["provider_id"])
    found: dict[int, Message] = {}
    if by_id:
        valid = {}
        for index, message_id in by_id.items():
            with contextlib.suppress(ValueError):
                valid[index] = uuid.UUID(message_id)
        rows = Message.objects.filter(
            pk__in=set(valid.values()), application_id=application_id, channel=KAKAOTALK
        ).in_bulk()
        found |= {index: rows[pk] for index, pk in valid.items() if pk in rows}
    if by_provider:
        oldest = since - timedelta(seconds=settings.KAKAO_RESULTS_MATCH_SECONDS)
        rows = {
            m.provider_id: m
            for m in Message.objects.filter(
                application_id=application_id,
                channel=KAKAOTALK,
                created_at__gte=oldest,
                provider_id__in=set(by_provider.values()),
            )
        }
        found |= {index: rows[pid] for index, pid in by_provider.items() if pid in rows}
    return found


def _recorded(messages: Iterable[Message]) -> set[tuple[str, str, str, str]]:
    """(message id, provider status, dealer's code, resend status) of the reports already
    recorded on these (KakaoTalk) messages."""
    events = MessageEvent.objects.filter(
        message__in=[m.pk for m in messages], type=MessageEvent.Type.REPORT
    ).values_list("message_id", "details")
    return {
        (str(pk), d.get("provider_status"), str(d.get("code")), str(d.get("resend_status")))
        for pk, d in events
    }


def kakao_results_record(*, application_id, results: list[Mapping[str, Any]], since: datetime):
    """Records the dealer's results (KakaoAdapter.results) on the application's messages;
    returns counts by what was done (`delivered`, `resent_sms`, `failed`, `unmatched`,
    `already_recorded`, ...)."""
    counts: Counter = Counter()
    matched = _matched(application_id, results, since)
    counts["unmatched"] = len(results) - len(matched)
    recorded = _recorded(matched.values())
    dead: set = set()
    for index, message in matched.items():
        result = results[index]
        outcome = result.get("outcome") or "pending"
        if outcome == "pending":
            counts["pending"] += 1
            continue
        if message.status == MessageStatus.PENDING:
            # The dealer has it, our send is not recorded yet (a worker died after sending;
            # the batch goes again and the dealer refuses the repeat): read it again later.
            counts["not_sent_yet"] += 1
            continue
        code, resend = result.get("code"), result.get("resend_status")
        if outcome == "resent_sms" and resend not in RESEND_DONE:
            counts["resending"] += 1
            continue  # the SMS is on its way: its result comes with a later update
        key = (str(message.pk), outcome, str(code), str(resend))
        if key in recorded:
            counts["already_recorded"] += 1
            continue
        recorded.add(key)
        details = {
            "code": code,
            "resend_status": resend,
            "provider_id": result.get("provider_id"),
            **{k: v for k, v in (result.get("details") or {}).items() if k != "recipientNo"},
        }
        if outcome in ("resent_sms", "resend_failed"):
            details["fallback"] = "sms"
        with transaction.atomic():
            message_provider_report(
                message=message,
                status=outcome,
                details=details,
                provider=KAKAO_PROVIDER,
                received=outcome == "delivered"
                or (outcome == "resent_sms" and resend == RESEND_DELIVERED),
            )
        if _not_a_user(result):
            dead.add(message.subscription_id)
        counts[outcome] += 1
    if dead:
        with transaction.atomic():
            subscriptions_disable(subscription_ids=dead, reason=TOKEN_INVALID, actor=KAKAO_PROVIDER)
        counts["subscriptions_disabled"] = len(dead)
    return counts


def kakao_results_poll(*, application: Application, now: datetime | None = None) -> Counter:
    """Reads the dealer's result updates of the application since its last poll (less an
    overlap) and records them (kakao_results_record). The watermark moves only once they are
    recorded, and not while a result waits for its message's send to be recorded (it is read
    again next time). One poll per application at a time; without KakaoTalk credentials,
    nothing happens."""
    credentials = kakao_credentials(application=application)
    if credentials is None:
        return Counter()
    lock = _POLLING.format(application.pk)
    if not cache.add(lock, 1, timeout=settings.KAKAO_RESULTS_POLL_LOCK_SECONDS):
        return Counter({"busy": 1})  # another worker is polling this application
    try:
        now = now or timezone.now()
        since, until = _results_window(application.pk, now)
        results = registry.get_adapter(KAKAOTALK).results(credentials, since=since, until=until)
        counts = kakao_results_record(application_id=application.pk, results=results, since=since)
        mark = _WATERMARK.format(application.pk)
        if not counts.get("not_sent_yet"):
            cache.set(mark, until.isoformat(), timeout=None)
        elif cache.get(mark) is None:  # the first poll: keep reading from its start
            overlap = timedelta(seconds=settings.KAKAO_RESULTS_OVERLAP_SECONDS)
            cache.set(mark, (since + overlap).isoformat(), timeout=None)
        return counts
    finally:
        cache.delete(lock)
