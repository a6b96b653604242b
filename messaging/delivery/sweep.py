"""The stale-pending sweep: hands over again what never reached the broker, was lost with a
worker or with the broker's data, and scheduled messages that are due."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .. import dispatch
from ..models import Message, MessageStatus, SweepMark
from ..signals import broker_data_lost

logger = logging.getLogger(__name__)


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
    dispatch.broker_marker_present is gone although one was placed before; a broker that
    never had one gets it quietly, see dispatch.broker_lost_queued_tasks), the work handed
    over since the stale window's end is lost too and would wait
    MESSAGE_STALE_AFTER_SECONDS: a third window, "lost", hands
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
    # A broker that never had a marker (the first start) gets one without a word.
    broker_lost = dispatch.broker_lost_queued_tasks(placed_before=dispatch.BROKER_MARK in marks)
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
        if done >= limit:
            complete = False
            break
        # One read of the window along its column, handed over in batches as it is fetched.
        # Not a query per batch: a batch's rows leave the window but stay in the index of
        # send_after with their key, so when many messages are due at one instant (a
        # campaign's local time), each query would walk past all the rows handed over before
        # it. In autocommit the cursor is held across the batches' transactions.
        allowed = limit - done
        rows = candidates.order_by(column).values_list("pk", "priority")[:allowed]
        read = 0
        fetched = rows.iterator(chunk_size=size)
        while batch := list(islice(fetched, size)):
            dispatch.hand_over(batch, now)
            read += len(batch)
        done += read
        if read >= allowed:
            complete = False
            break
        if upper is not None:
            SweepMark.objects.update_or_create(name=name, defaults={"position": upper})
    if broker_lost and complete:
        retries = _requeue_future_retries(now)
        broker_data_lost.send(sender=pending_sweep, now=now)
        dispatch.broker_marker_place()
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
        dispatch.enqueue(dispatch.RETRY_QUEUE, ids, countdown=delay)
    return sum(len(ids) for ids in by_delay.values())
