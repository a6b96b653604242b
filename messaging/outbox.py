"""Hands message ids to Celery in batches.

Many API requests each create one message; sending each as its own task would make the
broker and the workers pay per message. The outbox sends at most one `deliver_batch` task
per queue and flush interval per process, carrying every id gathered since the last one. A
process that dies with ids still in its outbox loses nothing: the messages are `pending` in
PostgreSQL and the stale-pending sweep enqueues them again.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

from django.conf import settings

logger = logging.getLogger(__name__)


def _publish(queue: str, ids: list[str], countdown: float | None = None) -> None:
    from .tasks import deliver_batch

    deliver_batch.apply_async(args=[ids], queue=queue, countdown=countdown)


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
        self._thread: threading.Thread | None = None
        self._pid = 0
        # When the last flush began (time.monotonic()): the next waits for the interval.
        self.last_flush = float("-inf")

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
        with self._lock:
            self._pending[queue].extend(ids[cut:])
            self._ensure_thread()
        self._wake.set()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(list)
        for queue, ids in pending.items():
            for batch in _batches(ids):
                try:
                    _publish(queue, batch)
                except Exception:
                    # The messages stay pending in the database; the sweep re-enqueues them.
                    logger.exception("Could not enqueue %d messages on %s", len(batch), queue)

    def _ensure_thread(self) -> None:
        # Threads do not survive fork: a forked web or worker process starts its own; and a
        # thread that died is replaced rather than leaving ids to wait for the sweep.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
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
