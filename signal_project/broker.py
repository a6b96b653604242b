"""kombu's Redis transport, made to survive the loss of its broker.

When the Redis connection breaks, Celery 5.7.0's consumer collects the broken connection
(`Connection.collect()` detaches its transport: `transport.client = None`), closes it, and
connects anew. The old channel is still used afterwards: closing it again restores the tasks
it had delivered but not acknowledged, and a task that finishes after the reconnect is
acknowledged on it. Both build a Redis client from the detached transport's parameters and
raise `AttributeError: 'NoneType' object has no attribute 'hostname'`, which is not one of
the transport's connection errors: nothing catches it, and the worker exits with
"Unrecoverable error" instead of reconnecting (Celery 5.6.3 did not close after collecting,
so it met this less often; kombu#582 is the same failure on an older path).

Here a channel whose transport was detached raises a Redis `ConnectionError` instead: the
close and the late acknowledgement then fail the way kombu and Celery expect and ignore (the
task stays in Redis's unacknowledged set and is re-delivered after the visibility timeout;
its messages are pending in PostgreSQL, and the stale-pending sweep enqueues them as well).
Selected in settings.py with `CELERY_BROKER_TRANSPORT` for `redis://` and `rediss://` URLs.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class RedisChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel
