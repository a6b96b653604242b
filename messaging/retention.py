"""Retention: an application's messages are deleted `retention_days` after they were made
(Application.retention_days), with their events and inbox items, and so are its
subscription events and its fallback chains closed that long ago (an open chain is kept
until it closes; one whose current messages the purge deleted stops, `messages_deleted`).

The purge walks each application's expired messages oldest first through the
(application, created_at) index, a bounded batch per short transaction, the applications in
turn (one batch each per round), until nothing is left or the run's time budget is spent;
the next run continues where this one stopped, since what is left is again "the oldest
expired rows". Each batch's transaction locks only the rows it deletes (SKIP LOCKED: a
message a worker is sending right now is left for a later run) and waits at most
RETENTION_PURGE_LOCK_TIMEOUT_MS for any other lock. A pause between batches leaves the
database to sending (bench/retention.py measures both; figures in bench/RESULTS.md).

A message past retention is deleted whatever its status, except a pending one still
scheduled for later (send_after in the future; at most 30 days ahead), which is kept until it
has been sent. A pending message of a campaign run that is deleted counts as cancelled in
the run's figures (message_statuses_changed), so the run's `pending` reaches zero and the run
completes; the run's other counters are its history and do not move. Inbox counts move with
the inbox items deleted.

The frequency cap's rows (FrequencyWindow, one per recipient ever capped) go once they count
nothing: every stamp older than the application's cap window, or all of an application's
rows when it has no cap. They are walked in recipient order after the messages, a bounded
batch per transaction, within the same budget.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from accounts import audit
from accounts.models import Application
from core.bulk import uuid_array

from .models import Message, MessageStatus, SweepMark
from .signals import message_statuses_changed

logger = logging.getLogger(__name__)

# One purge at a time across all processes and hosts (a run longer than the beat interval,
# or one started by hand meanwhile): a lease, the row of this name in SweepMark whose
# position is when the lease runs out (see PurgeLease).
PURGE_LEASE = "retention"


@dataclass
class Purged:
    """What a run deleted (or, dry, would delete) of one application."""

    messages: int = 0
    events: int = 0
    inbox_items: int = 0
    subscription_events: int = 0
    fallback_chains: int = 0
    # Pending messages of campaign runs among `messages`, counted cancelled in their runs.
    pending_cancelled: int = 0
    # The frequency cap's rows of recipients that no longer count anything.
    frequency_windows: int = 0

    def add(self, other: Purged) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def __bool__(self) -> bool:
        return any(asdict(self).values())


@dataclass
class PurgeRun:
    """A run's outcome: per application id what it deleted, and `finished`: false when the
    budget ran out with expired rows left (rows skipped because others held them are left
    for a later run either way)."""

    purged: dict
    finished: bool
    seconds: float
    batches: int
    skipped: bool = False  # another purge was running


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def cutoff_of(application: Application, now: datetime) -> datetime:
    return now - timedelta(days=application.retention_days)


# --- Statements ---------------------------------------------------------------------------------

# The batch: the oldest expired messages of one application through msg_app_created, locked;
# rows another transaction holds (a worker sending them) are skipped, not waited for. The
# scan starts where the run's previous batch ended (`after`): the index entries of the rows
# deleted before stay in the index until vacuum, and a scan from the oldest end would walk
# all of them again on every batch.
_PICK = """
SELECT id, status, campaign_run_id, created_at FROM messaging_message
WHERE application_id = %(app)s AND created_at >= %(after)s AND created_at < %(cutoff)s
  AND NOT (status = 'pending' AND send_after IS NOT NULL AND send_after > %(now)s)
ORDER BY created_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

_DELETE_EVENTS = "DELETE FROM messaging_messageevent WHERE message_id = ANY(%(ids)s::uuid[])"

# Each deleted item leaves its inbox's total if it was not archived, and its unread count if
# it was neither read nor archived.
_DELETE_ITEMS = """
WITH gone AS (
  DELETE FROM messaging_inboxitem WHERE message_id = ANY(%(ids)s::uuid[])
  RETURNING subscription_id, read_at, archived_at
)
SELECT subscription_id, count(*),
       count(*) FILTER (WHERE archived_at IS NULL),
       count(*) FILTER (WHERE read_at IS NULL AND archived_at IS NULL)
FROM gone GROUP BY subscription_id
"""

# Inboxes in id order (as messaging.inbox.deliver.counts_add takes them): two writers of
# the same inboxes wait for each other instead of deadlocking.
_COUNTS_MOVE = """
UPDATE messaging_inboxcount AS c
SET total = c.total - v.total, unread = c.unread - v.unread
FROM (SELECT * FROM unnest(%(subs)s::uuid[], %(total)s::int[], %(unread)s::int[])
      AS t(subscription_id, total, unread)) AS v
WHERE c.subscription_id = v.subscription_id
"""

_DELETE_MESSAGES = "DELETE FROM messaging_message WHERE id = ANY(%(ids)s::uuid[])"

_DELETE_SUBSCRIPTION_EVENTS = """
DELETE FROM messaging_subscriptionevent WHERE id IN (
  SELECT e.id FROM messaging_subscriptionevent e
  JOIN messaging_subscription s ON s.id = e.subscription_id
  WHERE s.application_id = %(app)s AND e.created_at < %(cutoff)s
  ORDER BY e.created_at LIMIT %(limit)s
  FOR UPDATE OF e SKIP LOCKED
)
"""

# The frequency cap's windows (messaging.rules, one row per recipient) are walked in
# recipient order, the primary key, a bounded batch at a time; of a batch, those that count
# nothing any more go: every stamp older than their application's cap window, or any window
# of an application without a cap (or gone). Rows a batch that sends is counting (locked) are
# skipped.
_WINDOWS_PAGE = """
SELECT recipient FROM messaging_frequencywindow
WHERE recipient > %(after)s {only_app}
ORDER BY recipient
LIMIT %(limit)s
"""

_DELETE_WINDOWS = """
DELETE FROM messaging_frequencywindow WHERE recipient IN (
  SELECT w.recipient FROM messaging_frequencywindow w
  LEFT JOIN accounts_application a ON a.id = w.application_id
  WHERE w.recipient = ANY(%(recipients)s::uuid[])
    AND (a.frequency_cap IS NULL OR jsonb_typeof(a.frequency_cap) <> 'object'
         OR coalesce((SELECT max(t) FROM unnest(w.sent) t), '-infinity')
            <= %(now)s - make_interval(secs => (a.frequency_cap->>'per_seconds')::float8))
  FOR UPDATE OF w SKIP LOCKED
)
RETURNING application_id
"""

_COUNT_WINDOWS = """
SELECT count(*) FROM messaging_frequencywindow w
JOIN accounts_application a ON a.id = w.application_id
WHERE w.application_id = %(app)s
  AND (a.frequency_cap IS NULL OR jsonb_typeof(a.frequency_cap) <> 'object'
       OR coalesce((SELECT max(t) FROM unnest(w.sent) t), '-infinity')
          <= %(now)s - make_interval(secs => (a.frequency_cap->>'per_seconds')::float8))
"""

_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


# Closed chains through fallback_closed (application, closed_at); an open one has no closed_at.
_DELETE_CHAINS = """
DELETE FROM messaging_fallbackchain WHERE id IN (
  SELECT id FROM messaging_fallbackchain
  WHERE application_id = %(app)s AND closed_at IS NOT NULL AND closed_at < %(cutoff)s
  ORDER BY closed_at LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
"""


# --- Batches ------------------------------------------------------------------------------------


def _lock_timeout(cursor) -> None:
    cursor.execute(f"SET LOCAL lock_timeout = {int(settings.RETENTION_PURGE_LOCK_TIMEOUT_MS)}")


def messages_batch_purge(
    *,
    application: Application,
    cutoff: datetime,
    now: datetime,
    limit: int,
    after: datetime | None = None,
) -> tuple[Purged, datetime | None]:
    """Deletes up to `limit` of the application's messages made before `cutoff` (and not
    before `after`), oldest first, their events and inbox items, in one transaction; moves
    inbox counts and the runs' figures of pending messages. Returns the counts and the
    newest created_at deleted (the next batch's `after`)."""
    purged = Purged()
    params = {"app": application.pk, "after": after or _EARLIEST, "cutoff": cutoff}
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_timeout(cursor)
        cursor.execute(_PICK, {**params, "now": now, "limit": limit})
        rows = cursor.fetchall()
        if not rows:
            return purged, after
        ids = uuid_array(row[0] for row in rows)
        cursor.execute(_DELETE_EVENTS, {"ids": ids})
        purged.events = cursor.rowcount
        cursor.execute(_DELETE_ITEMS, {"ids": ids})
        inboxes = sorted(cursor.fetchall(), key=lambda row: str(row[0]))
        if inboxes:
            purged.inbox_items = sum(row[1] for row in inboxes)
            cursor.execute(
                _COUNTS_MOVE,
                {
                    "subs": uuid_array(row[0] for row in inboxes),
                    "total": [row[2] for row in inboxes],
                    "unread": [row[3] for row in inboxes],
                },
            )
        cursor.execute(_DELETE_MESSAGES, {"ids": ids})
        purged.messages = cursor.rowcount
        transitions = Counter(
            (run_id, MessageStatus.PENDING, MessageStatus.CANCELLED)
            for _pk, status, run_id, _at in rows
            if run_id and status == MessageStatus.PENDING
        )
        if transitions:
            purged.pending_cancelled = sum(transitions.values())
            message_statuses_changed.send(sender=Message, transitions=transitions)
    return purged, rows[-1][3]


def subscription_events_batch_purge(
    *, application: Application, cutoff: datetime, limit: int
) -> int:
    """Deletes up to `limit` of the application's subscription events made before `cutoff`."""
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_timeout(cursor)
        cursor.execute(
            _DELETE_SUBSCRIPTION_EVENTS,
            {"app": application.pk, "cutoff": cutoff, "limit": limit},
        )
        return cursor.rowcount


def chains_batch_purge(*, application: Application, cutoff: datetime, limit: int) -> int:
    """Deletes up to `limit` of the application's fallback chains closed before `cutoff`."""
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_timeout(cursor)
        cursor.execute(_DELETE_CHAINS, {"app": application.pk, "cutoff": cutoff, "limit": limit})
        return cursor.rowcount


def frequency_windows_batch_purge(
    *, now: datetime, limit: int, after=None, application_id=None
) -> tuple[Counter, object | None]:
    """Of the next `limit` frequency-cap windows after recipient `after` (of one application,
    or all), deletes those that count nothing any more (see _DELETE_WINDOWS). Returns the
    deleted ones by application id, and the last recipient looked at (None: no more)."""
    only_app = "AND application_id = %(app)s" if application_id is not None else ""
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_timeout(cursor)
        cursor.execute(
            _WINDOWS_PAGE.format(only_app=only_app),
            {"after": after or _ZERO_UUID, "limit": limit, "app": application_id},
        )
        recipients = [row[0] for row in cursor.fetchall()]
        if not recipients:
            return Counter(), None
        cursor.execute(
            _DELETE_WINDOWS, {"recipients": uuid_array(str(r) for r in recipients), "now": now}
        )
        deleted = Counter(row[0] for row in cursor.fetchall())
    return deleted, recipients[-1] if len(recipients) == limit else None


def expired_count(*, application: Application, now: datetime) -> Purged:
    """What a purge would delete of the application now (the dry run's figures)."""
    cutoff = cutoff_of(application, now)
    expired = """
        SELECT id FROM messaging_message
        WHERE application_id = %(app)s AND created_at < %(cutoff)s
          AND NOT (status = 'pending' AND send_after IS NOT NULL AND send_after > %(now)s)
    """
    params = {"app": application.pk, "cutoff": cutoff, "now": now}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT (SELECT count(*) FROM ({expired}) m),
                   (SELECT count(*) FROM messaging_messageevent
                    WHERE message_id IN ({expired})),
                   (SELECT count(*) FROM messaging_inboxitem WHERE message_id IN ({expired})),
                   (SELECT count(*) FROM messaging_subscriptionevent e
                    JOIN messaging_subscription s ON s.id = e.subscription_id
                    WHERE s.application_id = %(app)s AND e.created_at < %(cutoff)s),
                   (SELECT count(*) FROM messaging_fallbackchain
                    WHERE application_id = %(app)s AND closed_at < %(cutoff)s)
            """,  # noqa: S608 (our own statement)
            params,
        )
        messages, events, items, subscription_events, chains = cursor.fetchone()
        cursor.execute(_COUNT_WINDOWS, params)
        [windows] = cursor.fetchone()
    return Purged(
        messages=messages,
        events=events,
        inbox_items=items,
        subscription_events=subscription_events,
        fallback_chains=chains,
        frequency_windows=windows,
    )


# --- The run ------------------------------------------------------------------------------------


def expired_purge(
    *,
    now: datetime | None = None,
    application_id=None,
    batch_size: int | None = None,
    budget_seconds: float | None = None,
    pause_seconds: float | None = None,
    dry_run: bool = False,
) -> PurgeRun:
    """Deletes the expired messages (with events and inbox items), subscription events and
    closed fallback chains of every application, or of one, in batches of `batch_size`, the
    applications in turn, for at most `budget_seconds`, pausing `pause_seconds` after each
    batch. Writes a log line and an audit row per application it deleted something of. Dry:
    counts instead."""
    now = now or timezone.now()
    batch_size = batch_size or settings.RETENTION_PURGE_BATCH_SIZE
    budget = settings.RETENTION_PURGE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    pause = settings.RETENTION_PURGE_PAUSE_SECONDS if pause_seconds is None else pause_seconds
    applications = Application.objects.order_by("pk")
    if application_id is not None:
        applications = applications.filter(pk=application_id)
    started = time.monotonic()
    if dry_run:
        purged = {app.pk: expired_count(application=app, now=now) for app in applications}
        return PurgeRun(
            purged={k: v for k, v in purged.items() if v},
            finished=True,
            seconds=round(time.monotonic() - started, 3),
            batches=0,
        )
    lease = PurgeLease()
    if not lease.take():
        logger.info("Retention purge skipped: another purge is running")
        return PurgeRun(purged={}, finished=False, seconds=0.0, batches=0, skipped=True)
    try:
        return _purge(
            list(applications), now, batch_size, budget, pause, started, application_id, lease
        )
    finally:
        lease.release()


class PurgeLease:
    """One purge at a time: a lease in the database, taken and given back by single-statement
    transactions, so it holds whatever connection each statement runs on (a session-level
    advisory lock does not behind a pooler in transaction mode: taken on one server
    connection, released on another or never). The lease is SweepMark row PURGE_LEASE; its
    position is when it runs out. Taking it is one UPDATE that succeeds only on a lease that
    ran out (PostgreSQL re-checks the condition on a row another transaction changed
    meanwhile, so of two takers one wins). The holder extends it while it works (`keep`,
    after each batch) and gives it back at the end; a holder that died leaves it for at most
    RETENTION_PURGE_LEASE_SECONDS. Its expiry, to the microsecond, tells the holder: a
    holder whose lease ran out and was taken by another neither extends nor gives back the
    other's."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = settings.RETENTION_PURGE_LEASE_SECONDS if seconds is None else seconds
        self.expires: datetime | None = None
        self._renewed = 0.0

    def take(self) -> bool:
        SweepMark.objects.get_or_create(name=PURGE_LEASE, defaults={"position": _EARLIEST})
        now = timezone.now()
        expires = now + timedelta(seconds=self.seconds)
        taken = SweepMark.objects.filter(name=PURGE_LEASE, position__lte=now).update(
            position=expires
        )
        if taken:
            self.expires, self._renewed = expires, time.monotonic()
        return bool(taken)

    def keep(self) -> bool:
        """Extends the lease once a third of it has passed; false when it was lost (it ran
        out and another purge took it): the holder stops."""
        if self.expires is None:
            return False
        if time.monotonic() - self._renewed < self.seconds / 3:
            return True
        expires = timezone.now() + timedelta(seconds=self.seconds)
        kept = SweepMark.objects.filter(name=PURGE_LEASE, position=self.expires).update(
            position=expires
        )
        if not kept:
            self.expires = None
            logger.warning("Retention purge lost its lease; it stops, another purge continues")
            return False
        self.expires, self._renewed = expires, time.monotonic()
        return True

    def release(self) -> None:
        if self.expires is None:
            return
        SweepMark.objects.filter(name=PURGE_LEASE, position=self.expires).update(
            position=timezone.now()
        )
        self.expires = None


def _purge(
    applications, now, batch_size, budget, pause, started, application_id, lease
) -> PurgeRun:
    purged = {app.pk: Purged() for app in applications}
    # An application leaves the round when a batch finds less than a full batch (or a lock
    # timed out: a later run tries again). The budget is looked at after each batch, so a
    # run always makes progress.
    messages_left = list(applications)
    events_left = list(applications)
    chains_left = list(applications)
    position: dict = {}  # application id -> where its next batch starts
    batches = 0

    def spent() -> bool:
        return time.monotonic() - started >= budget or not lease.keep()

    while messages_left or events_left or chains_left:
        for app in list(messages_left):
            result = _batch_or_none(
                lambda app=app: messages_batch_purge(
                    application=app,
                    cutoff=cutoff_of(app, now),
                    now=now,
                    limit=batch_size,
                    after=position.get(app.pk),
                ),
                app,
            )
            done = None
            if result is not None:
                done, position[app.pk] = result
            batches += 1
            if done is None or done.messages < batch_size:
                messages_left.remove(app)
            if done:
                purged[app.pk].add(done)
            if spent():
                break
            if pause and done:  # a batch that found nothing cost one index probe
                time.sleep(pause)
        if spent():
            break
        for left, purge_batch, kind in (
            (events_left, subscription_events_batch_purge, "subscription_events"),
            (chains_left, chains_batch_purge, "fallback_chains"),
        ):
            batches += _counted_round(
                left, purge_batch, kind, purged, now, batch_size, pause, spent
            )
            if spent():
                break
        if spent():
            break
    windows_left = True
    windows_after = None
    while windows_left and not spent():
        result = _batch_or_none(
            lambda after=windows_after: frequency_windows_batch_purge(
                now=now, limit=batch_size, after=after, application_id=application_id
            ),
            None,
        )
        batches += 1
        if result is None:
            break
        deleted, windows_after = result
        for app_id, count in deleted.items():
            if app_id in purged:
                purged[app_id].frequency_windows += count
        windows_left = windows_after is not None
        if pause and deleted and windows_left:
            time.sleep(pause)
    seconds = round(time.monotonic() - started, 3)
    finished = not (messages_left or events_left or chains_left or windows_left)
    for app in applications:
        done = purged[app.pk]
        if not done:
            continue
        figures = asdict(done)
        logger.info(
            "Retention purge of application %s (%d days): %s%s",
            app.pk,
            app.retention_days,
            ", ".join(f"{name} {value}" for name, value in figures.items()),
            "" if finished else " (budget spent; the next run continues)",
        )
        audit.audit_record(
            application_id=app.pk,
            actor=audit.SYSTEM,
            action=audit.RETENTION_PURGED,
            object_type="application",
            object_id=app.pk,
            details={**figures, "retention_days": app.retention_days, "finished": finished},
        )
    return PurgeRun(
        purged={k: v for k, v in purged.items() if v},
        finished=finished,
        seconds=seconds,
        batches=batches,
    )


def _counted_round(left, purge_batch, kind, purged, now, batch_size, pause, spent) -> int:
    """One round over the applications in `left` of a purge whose batch deletes rows older
    than each one's cutoff and returns how many (`kind` is the Purged field they count in).
    An application leaves `left` when its batch finds less than a full batch or times out
    on a lock. Returns the number of batches run."""
    batches = 0
    for app in list(left):
        count = _batch_or_none(
            lambda app=app: purge_batch(
                application=app, cutoff=cutoff_of(app, now), limit=batch_size
            ),
            app,
        )
        batches += 1
        if count is None or count < batch_size:
            left.remove(app)
        if count:
            setattr(purged[app.pk], kind, getattr(purged[app.pk], kind) + count)
        if spent():
            break
        if pause and count:
            time.sleep(pause)
    return batches


def _batch_or_none(batch, application):
    """The batch's result, or None when it waited too long for a lock (rolled back)."""
    try:
        return batch()
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        logger.warning(
            "Retention purge of %s waited too long for a lock; a later run continues",
            f"application {application.pk}" if application else "the frequency windows",
        )
        return None
