"""Inbox events for open streams: each appended to the subscription's Redis stream
`inbox:{subscription_id}` (the replay window a reconnecting client resumes from with
Last-Event-ID) and then published on the channel of the same name with its stream entry id.

Stream entry fields: `event` ("message" or "count") and `data` (JSON text: the item as the
API shows it, or {"unread", "total"}). Published message: JSON {"id": <entry id>, "event",
"data": <the same JSON text>}. Called after commit: an event never announces what a rollback
undid. A Redis failure is logged and does not fail the caller (the database is the truth; a
client refetches on its next count)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

MESSAGE, COUNT = "message", "count"
STREAM_MAXLEN = 1000


@dataclass(frozen=True, slots=True)
class InboxEvent:
    subscription_id: str
    event: str  # MESSAGE or COUNT
    data: dict


def key_of(subscription_id) -> str:
    """The Redis stream and pub/sub channel of one inbox."""
    return f"inbox:{subscription_id}"


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def redis_client() -> redis.Redis:
    """The inbox's Redis: settings.INBOX_REDIS_URL, else settings.REDIS_URL."""
    url = getattr(settings, "INBOX_REDIS_URL", None) or settings.REDIS_URL
    return _client(url)


def publish(events: Iterable[InboxEvent]) -> list[str]:
    """Appends each event to its inbox's stream, then publishes it with its entry id, in
    order; two round trips whatever the number. Returns the entry ids ([] on a Redis error)."""
    events = list(events)
    if not events:
        return []
    replay_seconds = int(getattr(settings, "INBOX_REPLAY_SECONDS", 86400))
    texts = [json.dumps(e.data, separators=(",", ":")) for e in events]
    try:
        client = redis_client()
        appended = client.pipeline(transaction=False)
        for event, text in zip(events, texts, strict=True):
            appended.xadd(
                key_of(event.subscription_id),
                {"event": event.event, "data": text},
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
        ids = [i.decode() if isinstance(i, bytes) else i for i in appended.execute()]
        announced = client.pipeline(transaction=False)
        for key in dict.fromkeys(key_of(e.subscription_id) for e in events):
            announced.expire(key, replay_seconds)
        for event, text, entry_id in zip(events, texts, ids, strict=True):
            message = json.dumps({"id": entry_id, "event": event.event, "data": text})
            announced.publish(key_of(event.subscription_id), message)
        announced.execute()
    except redis.RedisError:
        logger.exception("Inbox events could not be published (%d events)", len(events))
        return []
    return ids
