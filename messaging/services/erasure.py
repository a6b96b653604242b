"""Erasing a user and exporting what is stored about one: the writes (the export is a read,
but it is audited, so it starts here).

An erasure deletes, in one transaction and with set-based statements (a user may have hundreds
of thousands of messages; Django's collector would load every row), the user (its tags and
preferences), its subscriptions, their messages, message events, inbox items, inbox counts and
subscription events, its fallback chains, and the frequency cap's record of the times it was
sent to (the user's, and each subscription's from before it belonged to the user). What is
left of it is the audit row, with counts and the user's UUID.

The chains go first: their DELETE waits for the row lock of a chain the fallback tick is
moving, so a hop that tick makes for the user is committed before the messages are deleted
(and goes with them), and no later tick finds the chain.

Messages still queued for the user are not sent afterwards: a delivery task that names a
deleted message claims nothing (delivery.claim reads only existing pending rows). A message
a worker is sending at the moment of the erasure holds its row lock, so the erasure waits for
that send to be recorded and then deletes it with the rest. A campaign fan-out step that read
the user's subscription before the erasure may still insert a message for it afterwards (no
constraint ties messages to subscriptions, see Message.subscription): such a message finds no
subscription when it is claimed and fails `subscription_deleted` without being sent, and
`erase_leftovers` deletes it a few minutes later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import connection, transaction

from accounts import audit
from accounts.models import ApiKey
from core.bulk import uuid_array
from core.exceptions import NotFound

from .. import dispatch
from ..models import (
    FallbackChain,
    FrequencyWindow,
    InboxCount,
    InboxItem,
    Message,
    MessageEvent,
    MessageStatus,
    Subscription,
    SubscriptionEvent,
    User,
)
from ..selectors.export import user_export_chunks
from ..signals import message_statuses_changed

# How long after an erasure its leftovers are looked for: longer than a fan-out step or a
# delivery batch keeps its transaction open (messaging.tasks.DELIVER_TIME_LIMIT).
LEFTOVERS_DELAY_SECONDS = 300
ERASE_LEFTOVERS = "messaging.erase_leftovers"

# The kinds of rows an erasure deletes, in the order of its counts.
KINDS = (
    "users",
    "subscriptions",
    "subscription_events",
    "messages",
    "message_events",
    "inbox_items",
    "inbox_counts",
    "fallback_chains",
    "frequency_windows",
)


def user_erase(*, user: User, actor: str, api_key: ApiKey | None = None) -> dict[str, int]:
    """Deletes the user and everything stored about it (see the module's docstring), audits
    it with the number of rows deleted per kind, and returns those counts. Raises NotFound
    when another request erased it first."""
    with transaction.atomic():
        # Locked first: a concurrent erasure or tag change of this user waits for this one.
        user = User.objects.select_for_update().filter(pk=user.pk).first()
        if user is None:
            raise NotFound("No such user.")
        subscription_ids = list(
            Subscription.objects.select_for_update()
            .filter(user=user)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        counts = Counter(dict.fromkeys(KINDS, 0))
        counts["fallback_chains"] = _delete(FallbackChain._meta.db_table, "user_id", [user.pk])
        counts.update(_messages_delete(subscription_ids))
        counts["subscription_events"] = _delete(
            SubscriptionEvent._meta.db_table, "subscription_id", subscription_ids
        )
        counts["inbox_counts"] = _delete(
            InboxCount._meta.db_table, "subscription_id", subscription_ids
        )
        counts["frequency_windows"] = _delete(
            FrequencyWindow._meta.db_table, "recipient", [user.pk, *subscription_ids]
        )
        counts["subscriptions"] = _delete(Subscription._meta.db_table, "id", subscription_ids)
        counts["users"] = _delete(User._meta.db_table, "id", [user.pk])
        details = {kind: counts[kind] for kind in KINDS}
        audit.audit_record(
            application_id=user.application_id,
            actor=actor,
            api_key=api_key,
            action=audit.USER_ERASED,
            object_type="user",
            object_id=user.pk,
            details=details,
        )
        if subscription_ids:
            ids = [str(pk) for pk in subscription_ids]
            transaction.on_commit(
                lambda: dispatch.publish(
                    ERASE_LEFTOVERS,
                    args=[ids],
                    queue="critical",
                    countdown=LEFTOVERS_DELAY_SECONDS,
                )
            )
    return details


def erase_leftovers(*, subscription_ids: Iterable) -> dict[str, int]:
    """Deletes the messages (with their events and inbox items) that name these erased
    subscriptions: what a campaign fan-out step that had read them before the erasure
    inserted after it. Returns the counts per kind."""
    with transaction.atomic():
        return dict(_messages_delete(list(subscription_ids)))


def user_export(*, user: User, actor: str, api_key: ApiKey | None = None) -> Iterator[str]:
    """Audits the export of the user, and returns its JSON document in chunks of text
    (messaging.selectors.export), read as they are consumed."""
    with transaction.atomic():
        audit.audit_record(
            application_id=user.application_id,
            actor=actor,
            api_key=api_key,
            action=audit.USER_EXPORTED,
            object_type="user",
            object_id=user.pk,
            details={"subscriptions": Subscription.objects.filter(user=user).count()},
        )
    return user_export_chunks(user=user)


# --- Set-based deletes -------------------------------------------------------------------------

_CHUNK = 500  # ids per statement of the portable deletes


def _delete(table: str, column: str, ids: list) -> int:
    """Deletes the rows of `table` whose `column` is one of `ids` (a user's few subscriptions,
    or the SQLite fallback's messages) without loading them."""
    deleted = 0
    with connection.cursor() as cursor:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)  # noqa: S608
            deleted += cursor.rowcount
    return deleted


def _messages_delete(subscription_ids: list) -> Counter:
    """Deletes the messages of these subscriptions, their events and inbox items, and moves
    the counters of the campaign runs whose pending messages went (pending -> cancelled:
    they will not be sent, and the run completes without them). Returns the counts per kind.
    Run it inside a transaction."""
    counts: Counter = Counter()
    if not subscription_ids:
        return counts
    if connection.vendor == "postgresql":
        gone = _messages_delete_postgresql(subscription_ids, counts)
    else:
        gone = _messages_delete_portable(subscription_ids, counts)
    transitions: Counter[Any] = Counter(
        {(run_id, MessageStatus.PENDING, MessageStatus.CANCELLED): n for run_id, n in gone}
    )
    if transitions:
        message_statuses_changed.send(sender=Message, transitions=transitions)
    return counts


def _messages_delete_postgresql(subscription_ids: list, counts: Counter) -> list[tuple]:
    """The messages go first: their DELETE waits for the row lock of a message a worker is
    sending, so that worker's events and inbox item are committed when the next statements
    (each with a snapshot of its own) delete them. The deleted messages' ids wait in a
    temporary table for those statements, not in this process. Returns (run id, pending
    messages deleted) per campaign run."""
    message, event, item = (
        Message._meta.db_table,
        MessageEvent._meta.db_table,
        InboxItem._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS erased_message"
            " (id uuid PRIMARY KEY, campaign_run_id uuid, status text) ON COMMIT DELETE ROWS"
        )
        cursor.execute(
            f"WITH gone AS (DELETE FROM {message} WHERE subscription_id = ANY(%s::uuid[])"  # noqa: S608
            " RETURNING id, campaign_run_id, status)"
            " INSERT INTO erased_message SELECT id, campaign_run_id, status FROM gone",
            [uuid_array(subscription_ids)],
        )
        counts["messages"] = cursor.rowcount
        if not counts["messages"]:
            return []
        for table, kind in ((event, "message_events"), (item, "inbox_items")):
            cursor.execute(
                f"DELETE FROM {table} WHERE message_id IN (SELECT id FROM erased_message)"  # noqa: S608
            )
            counts[kind] = cursor.rowcount
        cursor.execute(
            "SELECT campaign_run_id, count(*) FROM erased_message"
            " WHERE status = %s AND campaign_run_id IS NOT NULL GROUP BY campaign_run_id",
            [MessageStatus.PENDING],
        )
        gone = cursor.fetchall()
        # Emptied now as well as at commit: a caller's outer transaction may erase again.
        cursor.execute("DELETE FROM erased_message")
    return gone


def _messages_delete_portable(subscription_ids: list, counts: Counter) -> list[tuple]:
    """The SQLite fallback's: the messages' ids are read first (its database is small, and
    one writer at a time)."""
    rows = list(
        Message.objects.filter(subscription_id__in=subscription_ids).values_list(
            "pk", "campaign_run_id", "status"
        )
    )
    ids = [pk for pk, _run, _status in rows]
    counts["message_events"] = _delete(MessageEvent._meta.db_table, "message_id", ids)
    counts["inbox_items"] = _delete(InboxItem._meta.db_table, "message_id", ids)
    counts["messages"] = _delete(Message._meta.db_table, "id", ids)
    pending = Counter(run for _pk, run, status in rows if run and status == MessageStatus.PENDING)
    return list(pending.items())
