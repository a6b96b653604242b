"""What every process tells operations/probes.py through Celery's signals.

- Every task message published (web, beat, workers) carries the header `published_at`
  (epoch seconds of its publication): the oldest-pending probe reads it on Redis.
- Each worker process that runs tasks (each prefork child; the main process of the solo and
  thread pools) writes its heartbeat every HEARTBEAT_INTERVAL_SECONDS from a daemon thread,
  to settings.REDIS_URL whatever the broker, and removes it when it stops.
- On RabbitMQ, each worker process records, per queue and at most once a second, the
  published_at of the task it starts (the oldest-pending upper bound, see probes._amqp_oldest).
- A worker process that exits marks its metric files dead (prometheus multiprocess mode).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery.signals import (
    before_task_publish,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from core import metrics_process

from . import probes

logger = logging.getLogger(__name__)


@before_task_publish.connect(dispatch_uid="operations.published_at")
def _stamp_published_at(headers=None, **kwargs) -> None:
    if headers is not None:
        headers[probes.PUBLISHED_AT_HEADER] = time.time()


class Heartbeat:
    """The daemon thread of one worker process: writes at once, then every interval."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        self.hostname, self.queues, self.pid = hostname, queues, os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ops-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def _beat(self) -> None:
        try:
            probes.heartbeat_write(hostname=self.hostname, pid=self.pid, queues=self.queues)
        except Exception as exc:  # Redis away: the next beat tries again
            logger.warning("worker heartbeat not written: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(probes.HEARTBEAT_INTERVAL_SECONDS):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        try:
            probes.heartbeat_clear(hostname=self.hostname, pid=self.pid)
        except Exception as exc:
            logger.debug("worker heartbeat not removed: %s", exc)


_heartbeat: Heartbeat | None = None


def _consumed_queues() -> list[str]:
    from celery import current_app

    try:
        return sorted(current_app.amqp.queues.consume_from or current_app.amqp.queues)
    except Exception:
        return []


def heartbeat_start(hostname: str) -> None:
    global _heartbeat
    if _heartbeat is not None and _heartbeat.pid == os.getpid():
        return
    _heartbeat = Heartbeat(hostname, _consumed_queues())
    _heartbeat.start()


def heartbeat_stop() -> None:
    global _heartbeat
    if _heartbeat is not None and _heartbeat.pid == os.getpid():
        _heartbeat.stop()
    _heartbeat = None


@worker_process_init.connect(dispatch_uid="operations.heartbeat_child")
def _child_started(sender=None, **kwargs) -> None:
    """A prefork child: Celery 5.7 sends the worker's hostname as the sender."""
    from socket import gethostname

    heartbeat_start(str(sender) if sender else gethostname())


@worker_ready.connect(dispatch_uid="operations.heartbeat_main")
def _worker_ready(sender=None, **kwargs) -> None:
    """The main process runs tasks itself with the solo and thread pools (not with prefork,
    whose children beat for themselves)."""
    from celery.concurrency.prefork import TaskPool as PreforkPool

    if isinstance(getattr(sender, "pool", None), PreforkPool):
        return
    heartbeat_start(getattr(sender, "hostname", None) or "unknown")


@worker_process_shutdown.connect(dispatch_uid="operations.child_exit")
def _child_exiting(pid=None, **kwargs) -> None:
    heartbeat_stop()
    metrics_process.process_exited(os.getpid())


@worker_shutdown.connect(dispatch_uid="operations.worker_exit")
def _worker_exiting(**kwargs) -> None:
    heartbeat_stop()
    metrics_process.process_exited(os.getpid())


_last_started_write: dict[str, float] = {}


@task_prerun.connect(dispatch_uid="operations.last_started")
def _record_started(task=None, **kwargs) -> None:
    if task is None or probes.broker_kind() != "amqp":
        return
    request = task.request
    published_at = getattr(request, probes.PUBLISHED_AT_HEADER, None)
    queue = (request.delivery_info or {}).get("routing_key")
    if published_at is None or not queue:
        return
    now = time.monotonic()
    if now - _last_started_write.get(queue, 0.0) < 1.0:
        return
    _last_started_write[queue] = now
    try:
        probes.state_redis().set(
            probes.LAST_STARTED_PREFIX + queue, float(published_at), ex=7 * 24 * 3600
        )
    except Exception as exc:
        logger.debug("last started task not recorded: %s", exc)
