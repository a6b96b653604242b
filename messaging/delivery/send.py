"""Sending a batch: claim it, send each (application, channel) group through its adapter,
record the results, all in one transaction. A channel delivered locally (the in-app inbox)
has no adapter and no credentials: its messages succeed at once, and recording them writes
their inbox items (record.record_results)."""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Application, ChannelCredential
from adapters import registry
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult
from core.bulk import uuid_array
from core.channels import LOCAL, SPECS

from ..links import links_for
from .claim import Outgoing, claim_batch
from .record import UNSENDABLE, BatchReport, record_results

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Sender:
    """What sending needs of an application: its id, settings and credentials, and the keys
    of its categories that recipients may turn off (their e-mails link to the preference
    page, messaging.links)."""

    pk: uuid.UUID
    settings: dict
    # Every channel's credentials as stored (encrypted), by channel; decrypted when used.
    channel_credentials: dict
    optional_categories: frozenset = frozenset()


# One query for a batch's applications, each with all its channels' credentials and its
# categories that are not required (a few rows by the category's unique index).
_SENDERS = """
SELECT a.id, a.settings,
       (SELECT json_object_agg(c.channel, c.values) FROM accounts_channelcredential c
        WHERE c.application_id = a.id),
       ARRAY(SELECT k.key FROM accounts_category k WHERE k.application_id = a.id
             AND NOT k.required)
FROM accounts_application a
WHERE a.id = ANY(%s::uuid[])
"""


@lru_cache(maxsize=256)
def _decrypted_json(ciphertext: str) -> dict:
    """Credentials as stored (encrypted JSON), decrypted once per process and value: a
    batch needs them every time, and Fernet's decryption would cost on every batch. A
    changed credential is a new ciphertext, so it is never served stale. The dict is
    shared between batches: adapters read credentials and never change them."""
    # The field's own reading of its column: one definition of the stored format.
    return ChannelCredential._meta.get_field("values").from_db_value(ciphertext, None, connection)


def _applications(ids: set) -> dict:
    """The senders of a batch's messages, by application id, in one plain SELECT."""
    if connection.vendor != "postgresql":
        return {
            a.pk: _Sender(
                a.pk,
                a.settings,
                {c.channel: c.values for c in a.channel_credentials.all()},
                frozenset(c.key for c in a.categories.all() if not c.required),
            )
            for a in Application.objects.filter(pk__in=ids).prefetch_related(
                "channel_credentials", "categories"
            )
        }
    with connection.cursor() as cursor:
        cursor.execute(_SENDERS, [uuid_array(ids)])
        return {
            pk: _Sender(
                pk,
                json.loads(extra),
                (json.loads(stored) if isinstance(stored, str) else stored) or {},
                frozenset(optional),
            )
            for pk, extra, stored, optional in cursor.fetchall()
        }


def _credentials(application: _Sender, channel: str) -> Credentials:
    values = application.channel_credentials.get(channel) or {}
    if isinstance(values, str):  # as stored: encrypted JSON
        values = _decrypted_json(values)
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    return Credentials(key=f"{application.pk}:{channel}:{digest}", values=values)


def _get_adapter(channel: str):
    # The registry is the one seam between messaging and the providers.
    try:
        return registry.get_adapter(channel)
    except registry.UnknownChannelError:
        return None


def _failures(messages: list[Outgoing], code: str, text: str, *, permanent: bool):
    return [
        SendResult(
            message_id=str(m.id), ok=False, error_code=code, error_message=text,
            permanent=permanent,
        )
        for m in messages
    ]  # fmt: skip


def send_group(application: _Sender, channel: str, messages: list[Outgoing]):
    """Sends one (application, channel) group; returns one SendResult per message."""
    spec = SPECS.get(channel)
    if spec is not None and spec.delivery == LOCAL:
        # Delivery is writing the item, done when the results are recorded.
        return [SendResult(message_id=str(m.id), ok=True) for m in messages]
    adapter = _get_adapter(channel)
    if adapter is None:
        return _failures(
            messages,
            "channel_unavailable",
            f"No adapter is configured for {channel}.",
            permanent=True,
        )
    credentials = _credentials(application, channel)
    if not credentials.values:
        return _failures(
            messages,
            "channel_unavailable",
            f"The application has no {channel} credentials.",
            permanent=True,
        )
    links = links_for(channel, optional_categories=application.optional_categories)
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
            parts=m.parts,
            keys=m.keys,
            **(links(m) if links else {}),
        )
        for m in messages
    ]
    try:
        return adapter.send_batch(credentials, outbound)
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
    messages = claim_batch(message_ids, timezone.now())
    if not messages:
        return BatchReport(claimed=0, outcomes=Counter())
    applications = _applications({m.application_id for m in messages})
    results: dict[uuid.UUID, SendResult] = {}
    groups: dict[tuple, list[Outgoing]] = defaultdict(list)
    for message in messages:
        if message.subscription_enabled:
            groups[(message.application_id, message.channel)].append(message)
        else:
            code, text = UNSENDABLE[message.subscription_enabled]
            [results[message.id]] = _failures([message], code, text, permanent=True)
    jobs = [(applications[app_id], channel, group) for (app_id, channel), group in groups.items()]
    if len(jobs) <= 1:  # none: every subscription was disabled, nothing goes out
        batches = [send_group(*job) for job in jobs]
    else:
        # Each in a copy of this context: the adapters' lines carry the task's ids too.
        contexts = [contextvars.copy_context() for _ in jobs]
        batches = list(_group_pool.map(lambda c, job: c.run(send_group, *job), contexts, jobs))
    for (_app, _channel, group), batch_results in zip(jobs, batches, strict=True):
        for message, result in zip(group, batch_results, strict=True):
            results[message.id] = result
    return record_results(messages, results, timezone.now(), queue)
