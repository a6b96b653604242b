"""What the broker and the workers look like right now: queue depths, the age of the oldest
waiting task, the worker processes alive. Read by /readyz and by /metrics at scrape time.

Every probe is bounded in time (socket timeouts of PROBE_TIMEOUT_SECONDS, one round trip or
one short-lived connection) and never raises: on any error it answers its empty value ({},
None or []), so a broken broker makes a probe say "unknown", never a page fail.

Worker heartbeats: each worker process writes `ops:worker:<hostname>:<pid>` (JSON: hostname,
pid, queues, seen_at) to settings.REDIS_URL every HEARTBEAT_INTERVAL_SECONDS with a TTL of
HEARTBEAT_TTL_SECONDS (operations/worker.py), also when the broker is RabbitMQ.

Task publish time: every task message carries the header `published_at` (epoch seconds, set
by operations/worker.py on Celery's before_task_publish), which the oldest-pending probe reads.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 0.05
# A fresh AMQP connection needs a TCP and an AMQP handshake: a little more than one round trip.
AMQP_CONNECT_TIMEOUT_SECONDS = 0.1
HEARTBEAT_PREFIX = "ops:worker:"
WORKERS_INDEX = "ops:workers"
HEARTBEAT_INTERVAL_SECONDS = 10.0
HEARTBEAT_TTL_SECONDS = 30
PUBLISHED_AT_HEADER = "published_at"
# RabbitMQ only: the published_at of the last task a worker started, per queue, and when a
# probe first saw a queue non-empty (see oldest_pending_seconds).
LAST_STARTED_PREFIX = "ops:last_started:"
BACKLOG_SINCE_PREFIX = "ops:backlog_since:"

# kombu's Redis transport keeps a queue's messages of priority p (p > 0, one of its
# priority steps) in the list "<queue>\x06\x16<p>", the rest in "<queue>" itself
# (kombu.transport.redis.Channel._q_for_pri, sep and priority_steps).
_KOMBU_REDIS_SEP = "\x06\x16"
_KOMBU_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def queue_names() -> tuple[str, ...]:
    return tuple(settings.CELERY_QUEUES)


def _redis(url: str) -> redis.Redis:
    """One client (and connection pool) per URL and process, with the probes' timeouts."""
    client = _clients.get(url)
    if client is None:
        with _clients_lock:
            client = _clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url,
                    socket_timeout=PROBE_TIMEOUT_SECONDS,
                    socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
                    retry_on_timeout=False,
                    health_check_interval=0,
                )
                _clients[url] = client
    return client


def state_redis() -> redis.Redis:
    """The Redis that holds heartbeats and the RabbitMQ bookkeeping: settings.REDIS_URL."""
    return _redis(settings.REDIS_URL)


def broker_url() -> str:
    return settings.CELERY_BROKER_URL


def broker_kind(url: str | None = None) -> str:
    """ "redis", "amqp" or "other" (the file-system broker of `make run` without Redis)."""
    url = url or broker_url()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        return "amqp"
    return "other"


def _priority_keys(queue: str) -> list[str]:
    return [
        queue if p == 0 else f"{queue}{_KOMBU_REDIS_SEP}{p}" for p in _KOMBU_REDIS_PRIORITY_STEPS
    ]


# --- queue depths --------------------------------------------------------------------------


def _redis_depths() -> dict[str, int]:
    client = _redis(broker_url())
    pipe = client.pipeline(transaction=False)
    queues = queue_names()
    for queue in queues:
        for key in _priority_keys(queue):
            pipe.llen(key)
    sizes = pipe.execute()
    steps = len(_KOMBU_REDIS_PRIORITY_STEPS)
    return {q: sum(sizes[i * steps : (i + 1) * steps]) for i, q in enumerate(queues)}


def _amqp_connection():
    from kombu import Connection

    return Connection(
        broker_url(),
        connect_timeout=AMQP_CONNECT_TIMEOUT_SECONDS,
        heartbeat=0,
        transport_options={
            "read_timeout": PROBE_TIMEOUT_SECONDS,
            "write_timeout": PROBE_TIMEOUT_SECONDS,
        },
    )


def _amqp_depths() -> dict[str, int]:
    """Passive queue_declare per queue (a queue not declared yet counts 0: nothing waits in
    it). A passive declare of a missing queue closes its channel, so each queue gets one."""
    from amqp.exceptions import NotFound

    depths = {}
    with _amqp_connection() as conn:
        conn.connect()
        for queue in queue_names():
            channel = conn.channel()
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except NotFound:
                depths[queue] = 0
                continue
            channel.close()
    return depths


def queue_depths() -> dict[str, int]:
    """Tasks waiting in each Celery queue (not those a worker holds, prefetched or running),
    read from the broker now; {} when the broker does not answer in time or is neither Redis
    nor RabbitMQ."""
    try:
        kind = broker_kind()
        if kind == "redis":
            return _redis_depths()
        if kind == "amqp":
            return _amqp_depths()
    except Exception as exc:
        logger.debug("queue depth probe failed: %s", exc)
    return {}


# --- oldest pending --------------------------------------------------------------------------


def _published_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(PUBLISHED_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def _redis_oldest(now: float) -> float | None:
    """kombu pushes on the left and workers pop on the right: the oldest message of each list
    is LINDEX -1. Messages without the header (published before it existed) are skipped."""
    client = _redis(broker_url())
    pipe = client.pipeline(transaction=False)
    keys = [key for queue in queue_names() for key in _priority_keys(queue)]
    for key in keys:
        pipe.lindex(key, -1)
    stamps = [s for s in map(_published_at, pipe.execute()) if s is not None]
    if not stamps:
        return 0.0 if all(n == 0 for n in _redis_depths().values()) else None
    return max(0.0, now - min(stamps))


def _amqp_oldest(now: float) -> float | None:
    """RabbitMQ cannot be peeked without taking the message from the queue, so this is an
    upper bound: each worker records, per queue, the published_at of the last task it started
    (ops:last_started:<queue>); queues are first in, first out, so every task still waiting
    was published after it, and its age is at most now minus that. A queue with depth 0
    counts 0. A non-empty queue from which no task was ever started (no worker consumes it)
    counts from the first time a probe saw it non-empty (ops:backlog_since:<queue>, cleared
    when it is seen empty): a lower bound then, the best there is without a consumer."""
    depths = _amqp_depths()
    if not depths:
        return None
    client = state_redis()
    queues = list(depths)
    started = client.mget([LAST_STARTED_PREFIX + q for q in queues])
    ages = [0.0]
    pipe = client.pipeline(transaction=False)
    for queue, last in zip(queues, started, strict=True):
        since_key = BACKLOG_SINCE_PREFIX + queue
        if depths[queue] == 0:
            pipe.delete(since_key)
        elif last is not None:
            ages.append(now - float(last))
        else:
            pipe.set(since_key, now, nx=True)
            pipe.get(since_key)
    for reply in pipe.execute():
        if isinstance(reply, bytes):
            ages.append(now - float(reply))
    return max(0.0, *ages)


def oldest_pending_seconds() -> float | None:
    """Seconds the oldest task waiting in the broker has waited (0.0 when nothing waits);
    None when it cannot be known (broker down or slow, file-system broker). Redis: read from
    the oldest message of each queue; RabbitMQ: an upper bound, see _amqp_oldest."""
    try:
        now = time.time()
        kind = broker_kind()
        if kind == "redis":
            return _redis_oldest(now)
        if kind == "amqp":
            return _amqp_oldest(now)
    except Exception as exc:
        logger.debug("oldest pending probe failed: %s", exc)
    return None


# --- workers ---------------------------------------------------------------------------------


def workers_online() -> list[dict]:
    """The worker processes whose heartbeat is fresh (written within HEARTBEAT_TTL_SECONDS):
    [{"hostname", "pid", "queues", "seen_at"}], sorted by hostname and pid; [] when none or
    when Redis does not answer in time. Read through the index WORKERS_INDEX (a sorted set
    of "<hostname>:<pid>" by last heartbeat), so no SCAN of a database shared with others."""
    try:
        client = state_redis()
        pipe = client.pipeline(transaction=False)
        pipe.zremrangebyscore(WORKERS_INDEX, "-inf", time.time() - HEARTBEAT_TTL_SECONDS)
        pipe.zrange(WORKERS_INDEX, 0, -1)
        members = pipe.execute()[1]
        if not members:
            return []
        workers = []
        for raw in client.mget([HEARTBEAT_PREFIX + m.decode() for m in members]):
            if raw is None:
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            workers.append(
                {
                    "hostname": data.get("hostname", ""),
                    "pid": data.get("pid"),
                    "queues": list(data.get("queues") or []),
                    "seen_at": data.get("seen_at"),
                }
            )
        return sorted(workers, key=lambda w: (w["hostname"], w["pid"] or 0))
    except Exception as exc:
        logger.debug("workers probe failed: %s", exc)
        return []


def heartbeat_write(*, hostname: str, pid: int, queues: list[str]) -> None:
    """One heartbeat of a worker process (see operations/worker.py); raises on Redis errors."""
    now = time.time()
    member = f"{hostname}:{pid}"
    data = json.dumps({"hostname": hostname, "pid": pid, "queues": queues, "seen_at": now})
    pipe = state_redis().pipeline(transaction=False)
    pipe.set(HEARTBEAT_PREFIX + member, data, ex=HEARTBEAT_TTL_SECONDS)
    pipe.zadd(WORKERS_INDEX, {member: now})
    pipe.execute()


def heartbeat_clear(*, hostname: str, pid: int) -> None:
    member = f"{hostname}:{pid}"
    pipe = state_redis().pipeline(transaction=False)
    pipe.delete(HEARTBEAT_PREFIX + member)
    pipe.zrem(WORKERS_INDEX, member)
    pipe.execute()
