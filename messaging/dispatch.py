"""Hands work to Celery: which queue a message goes to, its ids in batches (`enqueue`,
`hand_over`), any task by its name (`publish`), and the broker marker that tells whether the
broker lost what it held. Tasks are named, not imported: the tasks import the delivery
pipeline, which imports this module.

Many API requests each create one message; sending each as its own task would make the
broker and the workers pay per message. The outbox sends at most one `deliver_batch` task
per queue and flush interval per process, carrying every id gathered since the last one. A
process that dies with ids still in its outbox loses nothing: the messages are `pending` in
PostgreSQL and the stale-pending sweep enqueues them again.

A publish the broker does not take (it is down or restarting) never fails the caller: the
task is kept in the process and offered again every second, with its countdown counted from
the first attempt, for up to MESSAGE_PUBLISH_DEFER_SECONDS, so a broker that comes back within
that time gets all of it; what a process could not hand over by then (or held when it died) is
still pending in PostgreSQL, for the sweep.

Each task carries the id of the request it was published for (its `request_id` header, see
core.logging): a task published in the caller's context gets it from Celery's
before_task_publish; the outbox, which publishes from its own thread, keeps the ids of the
requests whose messages it gathered and names them itself (comma-separated, at most
MAX_REQUEST_IDS, when one batch holds the messages of several requests).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.utils import timezone

from core.logging import current_request_id

from .models import Message, SweepMark

logger = logging.getLogger(__name__)

# Deferred publishes held per process at most; beyond it the oldest are dropped (their work is
# pending in PostgreSQL, and the sweep or the campaign watchdog enqueues it again).
MAX_DEFERRED = 10_000
DEFER_RETRY_SECONDS = 1.0
# Request ids one task names at most (its header stays small).
MAX_REQUEST_IDS = 20

QUEUE_FOR_PRIORITY = {Message.Priority.HIGH: "critical", Message.Priority.NORMAL: "messages"}
RETRY_QUEUE = "retry"
DELIVER_BATCH = "messaging.deliver_batch"


@dataclass(slots=True)
class _Deferred:
    """A publish the broker did not take, to be offered again."""

    task: str  # its name
    args: list
    queue: str
    due: float  # time.monotonic() when it was meant to run
    given_up_at: float
    request_id: str | None


def _publish(
    queue: str, ids: list[str], countdown: float | None = None, request_id: str | None = None
) -> None:
    publish(DELIVER_BATCH, args=[ids], queue=queue, countdown=countdown, request_id=request_id)


def _apply(
    task: str, args: list, queue: str, countdown: float | None, request_id: str | None = None
) -> None:
    if countdown and settings.BROKER_COUNTDOWN_WHOLE_SECONDS:
        # Delays kept in the broker (RabbitMQ quorum queues) count whole seconds and refuse
        # less than one: round up, so a retry never goes sooner than its back-off.
        countdown = math.ceil(countdown)
    # By name: the publishing process need not have imported (registered) the task, and
    # no task of ours sets options of its own that apply_async would add. ignore_result as
    # the task would carry it from the app's configuration.
    current_app.send_task(
        task,
        args=args,
        queue=queue,
        countdown=countdown or None,
        ignore_result=current_app.conf.task_ignore_result,
        headers={"request_id": request_id} if request_id else None,
    )


def publish(
    task: str,
    *,
    args: list,
    queue: str,
    countdown: float | None = None,
    request_id: str | None = None,
) -> None:
    """Publishes the Celery task named `task`; when the broker does not take it, keeps it
    for a later try (see the module's docstring) instead of raising. `request_id`: the
    request(s) it is published for, when that is not the current one."""
    try:
        _apply(task, args, queue, countdown, request_id)
    except Exception as exc:
        outbox.defer(task, args, queue, countdown, exc, request_id or current_request_id())


def _request_ids(origins: list[tuple[int, str | None]], start: int, end: int) -> str | None:
    """The request ids of the ids [start, end) of an outbox queue whose additions began at
    the `origins` offsets."""
    found: list[str] = []
    for i, (offset, request_id) in enumerate(origins):
        if offset >= end:  # the offsets ascend: the rest lie beyond this batch
            break
        upto = origins[i + 1][0] if i + 1 < len(origins) else end
        if request_id and upto > start and request_id not in found:
            found.append(request_id)
            if len(found) == MAX_REQUEST_IDS:
                break
    return ",".join(found) or None


def _batches(ids: list[str]) -> Iterator[list[str]]:
    size = settings.MESSAGE_BATCH_SIZE
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class Outbox:
    def __init__(self) -> None:
        # Worker processes publish at once: their batches are already large, and a pool
        # child may exit without running atexit handlers.
        self.immediate = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[str, list[str]] = defaultdict(list)
        # Per queue: (offset in _pending, request id) of each addition, for the tasks' headers.
        self._origins: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
        self._thread: threading.Thread | None = None
        self._pid = 0
        # When the last flush began (time.monotonic()): the next waits for the interval.
        self.last_flush = float("-inf")
        self._deferred: deque[_Deferred] = deque()

    @property
    def deferred(self) -> int:
        """Publishes waiting for the broker."""
        return len(self._deferred)

    def defer(
        self, task, args: list, queue: str, countdown: float | None, exc, request_id=None
    ) -> None:
        now = time.monotonic()
        keep = settings.MESSAGE_PUBLISH_DEFER_SECONDS
        with self._lock:
            if not self._deferred:
                logger.warning("The broker did not take a task (%s); retrying every second", exc)
            self._deferred.append(
                _Deferred(task, args, queue, now + (countdown or 0), now + keep, request_id)
            )
            while len(self._deferred) > MAX_DEFERRED:
                dropped = self._deferred.popleft()
                logger.error("Dropped a deferred %s for %s: too many waiting", dropped.task,
                             dropped.queue)  # fmt: skip
            self._ensure_thread()
        self._wake.set()

    def retry_deferred(self) -> int:
        """Offers the deferred publishes to the broker again, oldest first, until one fails.
        Returns how many are still waiting."""
        while True:
            with self._lock:
                if not self._deferred:
                    return 0
                item = self._deferred[0]
            now = time.monotonic()
            if now > item.given_up_at:
                logger.error("Gave up publishing %s to %s: the sweep will enqueue its work",
                             item.task, item.queue)  # fmt: skip
            else:
                try:
                    _apply(item.task, item.args, item.queue, max(item.due - now, 0.0),
                           item.request_id)  # fmt: skip
                except Exception:
                    return len(self._deferred)
            with self._lock:
                if self._deferred and self._deferred[0] is item:
                    self._deferred.popleft()

    def add(self, queue: str, ids: Iterable[str]) -> None:
        """Queues ids for delivery; full batches go at once, the rest within the flush
        interval."""
        ids = [str(i) for i in ids]
        size = settings.MESSAGE_BATCH_SIZE
        interval = 0 if self.immediate else settings.MESSAGE_OUTBOX_FLUSH_MS / 1000
        cut = len(ids) - len(ids) % size if interval > 0 else len(ids)
        for batch in _batches(ids[:cut]):
            _publish(queue, batch)
        if cut == len(ids):
            return
        request_id = current_request_id()
        with self._lock:
            pending = self._pending[queue]
            self._origins[queue].append((len(pending), request_id))
            pending.extend(ids[cut:])
            self._ensure_thread()
        self._wake.set()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(list)
            origins, self._origins = self._origins, defaultdict(list)
        size = settings.MESSAGE_BATCH_SIZE
        for queue, ids in pending.items():
            for start in range(0, len(ids), size):
                end = min(start + size, len(ids))
                _publish(queue, ids[start:end], request_id=_request_ids(origins[queue], start, end))

    def _ensure_thread(self) -> None:
        # Threads do not survive fork: a forked web or worker process starts its own; and a
        # thread that died is replaced rather than leaving ids to wait for the sweep.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(DEFER_RETRY_SECONDS if self._deferred else None)
            self._wake.clear()
            if self._deferred:
                try:
                    self.retry_deferred()
                except Exception:
                    logger.exception("The outbox could not retry its deferred publishes")
            if not self._pending:
                continue
            # At most one flush per interval: under load the ids of many requests share
            # each task, while after a quiet interval the first ids leave at once, so an
            # idle service adds no latency. Read each time: the thread outlives any one
            # configuration (tests override the setting).
            try:
                interval = settings.MESSAGE_OUTBOX_FLUSH_MS / 1000
                delay = self.last_flush + interval - time.monotonic()
                if delay > 0:
                    threading.Event().wait(delay)
                self.last_flush = time.monotonic()
                self.flush()
            except Exception:
                logger.exception("The outbox could not flush; the sweep will enqueue the rest")


outbox = Outbox()
atexit.register(outbox.flush)


def enqueue(queue: str, ids: Iterable[str], countdown: float | None = None) -> None:
    """Delivery work for these message ids, now (batched) or after `countdown` seconds."""
    if countdown:
        for batch in _batches([str(i) for i in ids]):
            _publish(queue, batch, countdown=countdown)
        return
    outbox.add(queue, ids)


def queue_for(priority: str) -> str:
    """The queue a message of this priority is delivered from."""
    return QUEUE_FOR_PRIORITY.get(priority, "messages")


def hand_over(rows: Sequence[tuple], now: datetime) -> None:
    """Enqueues (pk, priority) rows on their priority's queue and records when."""
    Message.objects.filter(pk__in=[pk for pk, _ in rows]).update(enqueued_at=now)
    by_queue: dict[str, list[str]] = defaultdict(list)
    for pk, priority in rows:
        by_queue[queue_for(priority)].append(str(pk))
    for queue, ids in by_queue.items():
        enqueue(queue, ids)


# --- Did the broker lose its queues? -----------------------------------------------------------

BROKER_MARKER = "signal.broker-marker"
# The SweepMark that records when a marker was last placed: with it, a missing marker means
# lost data; without it, a broker this deployment never used (its first start).
BROKER_MARK = "broker"


def _marker_queue():
    from kombu import Exchange, Queue

    exchange = Exchange(BROKER_MARKER, type="direct", durable=True)
    return Queue(
        BROKER_MARKER, exchange, routing_key=BROKER_MARKER, durable=True, auto_delete=False
    )


def broker_marker_present() -> bool | None:
    """Whether the broker still holds the marker: a queue of ours with one message that no
    worker consumes. A broker that restarted without its data (Redis without persistence, a
    RabbitMQ node rebuilt) has lost it together with every queued task. None: the broker
    could not be asked."""
    try:
        with current_app.connection_for_write() as connection:
            channel = connection.channel()
            try:
                _name, messages, _consumers = channel.queue_declare(BROKER_MARKER, passive=True)
            except connection.channel_errors:
                return False
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
            return messages > 0
    except Exception as exc:
        logger.warning("Could not look for the broker marker: %s", exc)
        return None


def broker_lost_queued_tasks(*, placed_before: bool | None = None) -> bool:
    """Whether the broker lost what it held: its marker is gone although a marker was placed
    before (the SweepMark BROKER_MARK says so; a new, empty broker in place of the old one
    counts as a loss too, and rightly: what the old one held is not in it). Without that
    record (this deployment's first start) the broker gets its marker here, and nothing
    counts as lost. `placed_before`: the record's presence, when the caller read it already."""
    if placed_before is None:
        placed_before = SweepMark.objects.filter(name=BROKER_MARK).exists()
    present = broker_marker_present()
    if present is None:
        return False
    if not present and placed_before:
        return True
    if not present:
        broker_marker_place()
    elif not placed_before:
        _record_marker()  # placed before the record was kept
    return False


def _record_marker() -> None:
    SweepMark.objects.update_or_create(name=BROKER_MARK, defaults={"position": timezone.now()})


def broker_marker_place() -> None:
    """Puts the marker (one persistent message in a durable queue) in the broker, and records
    that it did (SweepMark BROKER_MARK)."""
    from kombu import Producer

    queue = _marker_queue()
    with current_app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            bound = queue(channel)
            bound.declare()
            bound.purge()
            Producer(channel).publish(
                {"placed_at": time.time()},
                exchange=queue.exchange,
                routing_key=BROKER_MARKER,
                delivery_mode=2,
                serializer="json",
            )
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    _record_marker()
