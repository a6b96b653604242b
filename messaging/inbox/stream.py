"""`GET /api/v1/inbox/stream`: an inbox's live events as Server-Sent Events, served by the
ASGI app (signal_project.asgi routes the path here; the WSGI app answers it with `wsgi_answer`).

An open stream is a coroutine, never a thread: the access check runs once in Django's sync
thread at connect, then the stream waits on its queue. One `InboxHub` per process holds ONE
Redis pub/sub connection, SUBSCRIBEd to `inbox:{subscription_id}` while at least one stream
of that inbox is open (reference-counted), and fans each published event out to the queues.

Nothing missed, nothing twice: a stream subscribes (and waits for Redis to confirm) BEFORE it
reads the Redis stream `inbox:{subscription_id}` (messaging.inbox.events) after the client's
Last-Event-ID, and drops live events whose id is not above the last one it sent. When the
pub/sub connection comes back after a Redis error, or a slow client's queue overflows, each
affected stream reads the Redis stream again after its last id. A Last-Event-ID the stream
cannot answer for (older than its first entry after trimming, older than the replay window,
or the stream gone) gets a `count` event with the current counts: the client refetches.

Figures (streams per process, memory, latency): bench/RESULTS.md, `bench/inbox_streams.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator
from urllib.parse import parse_qs
from uuid import UUID

import redis.asyncio as aioredis
import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import JsonResponse
from redis.exceptions import RedisError

from .events import key_of

logger = logging.getLogger(__name__)

PATH = "/api/v1/inbox/stream"
ASGI_APP = "signal_project.asgi:application"
RETRY_MILLISECONDS = 3000
# A stream's queue holds this many live events; beyond it the stream rereads the Redis stream.
QUEUE_SIZE = 256
# How long a new stream waits for Redis to confirm its SUBSCRIBE before it gives up.
SUBSCRIBE_TIMEOUT = 10.0
# The pub/sub connection PINGs after this much silence and reconnects without an answer.
PING_AFTER = 30.0
REPLAY_PAGE = 500

_RESYNC = object()  # a queue item that only wakes the stream (see Listener.resync)


def heartbeat_seconds() -> float:
    return float(getattr(settings, "INBOX_HEARTBEAT_SECONDS", 15))


def replay_seconds() -> int:
    return int(getattr(settings, "INBOX_REPLAY_SECONDS", 86400))


def redis_url() -> str:
    return getattr(settings, "INBOX_REDIS_URL", None) or settings.REDIS_URL


def parse_id(text: str | None) -> tuple[int, int] | None:
    """A stream entry id `ms-seq` as a comparable pair; None when it is not one."""
    if not text:
        return None
    ms, _, seq = text.strip().partition("-")
    try:
        pair = (int(ms), int(seq or 0))
    except ValueError:
        return None
    return pair if pair[0] >= 0 and pair[1] >= 0 else None


def frame(entry_id: str, event: str, data: str) -> bytes:
    """One SSE event; `data` is JSON text (one `data:` line per line, should it have several)."""
    lines = [f"id: {entry_id}", f"event: {event}"]
    lines += [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


class Listener:
    """One open stream's place in the hub: its queue of (id pair, frame) live events."""

    __slots__ = ("queue", "resync", "closed", "__weakref__")

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.resync = False  # reread the Redis stream after the last id sent
        self.closed = False

    def deliver(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.wake(resync=True)

    def wake(self, *, resync: bool = False, close: bool = False) -> None:
        self.resync = self.resync or resync
        self.closed = self.closed or close
        with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes its reader anyway
            self.queue.put_nowait(_RESYNC)


class InboxHub:
    """The process's (the event loop's) single Redis pub/sub connection and its listeners."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.listeners: dict[str, set[Listener]] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._pending: dict[str, int] = {}  # SUBSCRIBEs sent and not yet confirmed
        self._resync_on_confirm: set[str] = set()
        self._pubsub_pool = aioredis.ConnectionPool.from_url(
            url, socket_connect_timeout=5, socket_timeout=5
        )
        self._conn = None  # the pub/sub connection while it is up
        self._task: asyncio.Task | None = None
        self._closed = False
        self.connects = 0  # pub/sub connections made (tests and the bench read it)
        self.commands = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=20,
                timeout=10,
                decode_responses=True,
                socket_connect_timeout=5,
                socket_timeout=5,
            )
        )

    @contextlib.asynccontextmanager
    async def listening(self, channel: str) -> AsyncIterator[Listener]:
        """A listener of `channel`, once Redis confirmed the SUBSCRIBE (TimeoutError if it
        does not within SUBSCRIBE_TIMEOUT); the last one out UNSUBSCRIBEs."""
        if self._closed:
            raise RuntimeError("The inbox hub is closed.")
        listener = Listener()
        listeners = self.listeners.setdefault(channel, set())
        listeners.add(listener)
        try:
            if len(listeners) == 1:
                self._ready[channel] = asyncio.Event()
                await self._send("SUBSCRIBE", channel)
            self._start()
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await self._ready[channel].wait()
            yield listener
        finally:
            listeners.discard(listener)
            if not listeners and self.listeners.get(channel) is listeners:
                del self.listeners[channel]
                self._ready.pop(channel, None)
                await self._send("UNSUBSCRIBE", channel)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _send(self, command: str, *channels: str) -> None:
        """Sends on the pub/sub connection when it is up; when it is not, the reconnect
        subscribes to every channel that still has listeners."""
        conn = self._conn
        if conn is None:
            return
        if command == "SUBSCRIBE":
            for channel in channels:
                self._pending[channel] = self._pending.get(channel, 0) + 1
        try:
            await conn.send_command(command, *channels, check_health=False)
        except (RedisError, OSError) as exc:
            logger.warning("Inbox pub/sub %s failed: %s", command, exc)  # the reader reconnects

    def _confirmed(self, channel: str) -> None:
        left = self._pending.get(channel, 0) - 1
        if left > 0:
            self._pending[channel] = left
            return
        self._pending.pop(channel, None)
        ready = self._ready.get(channel)
        if ready is not None:
            ready.set()
        if channel in self._resync_on_confirm:
            self._resync_on_confirm.discard(channel)
            for listener in self.listeners.get(channel, ()):
                listener.wake(resync=True)

    def _dispatch(self, channel: str, payload: bytes) -> None:
        listeners = self.listeners.get(channel)
        if not listeners:
            return
        try:
            message = json.loads(payload)
            entry_id = message["id"]
            item = (parse_id(entry_id), frame(entry_id, message["event"], message["data"]))
        except (ValueError, KeyError, TypeError):
            logger.warning("Inbox pub/sub: a message that is not an event on %s", channel)
            return
        if item[0] is None:
            return
        for listener in listeners:
            listener.deliver(item)

    async def _run(self) -> None:
        """Keeps the pub/sub connection up: (re)connects, subscribes to every channel with
        listeners, reads. After a reconnect, the streams of every channel reread the Redis
        stream once Redis confirms the channel (what was published meanwhile is there)."""
        pause = 0.2
        while not self._closed:
            conn = self._pubsub_pool.make_connection()
            try:
                await conn.connect()
                self._pending.clear()
                channels = list(self.listeners)
                if self.connects:
                    self._resync_on_confirm = set(channels)
                self.connects += 1
                self._conn = conn
                for start in range(0, len(channels), 500):
                    batch = channels[start : start + 500]
                    for channel in batch:
                        self._pending[channel] = self._pending.get(channel, 0) + 1
                    await conn.send_command("SUBSCRIBE", *batch, check_health=False)
                pause = 0.2
                await self._read(conn)
            except (RedisError, OSError) as exc:
                if not self._closed:
                    logger.warning("Inbox pub/sub connection lost (%s); reconnecting", exc)
            finally:
                self._conn = None
                await conn.disconnect(nowait=True)
            if not self._closed:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _read(self, conn) -> None:
        pinged = False
        while True:
            response = await conn.read_response(
                timeout=PING_AFTER, disconnect_on_error=False, push_request=True
            )
            if response is None:  # silence: is Redis still there?
                if pinged:
                    raise ConnectionError("Redis did not answer a PING on the pub/sub connection")
                await conn.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            if not isinstance(response, list) or len(response) < 3:
                continue  # PONG outside subscribed mode
            kind, channel = response[0], response[1].decode()
            if kind == b"message":
                self._dispatch(channel, response[2])
            elif kind == b"subscribe":
                self._confirmed(channel)

    async def aclose(self) -> None:
        """Ends every open stream of this process and the pub/sub connection (server
        shutdown: the clients reconnect elsewhere with their Last-Event-ID)."""
        self._closed = True
        for listeners in self.listeners.values():
            for listener in listeners:
                listener.wake(close=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.commands.aclose()
        await self._pubsub_pool.disconnect()


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hub() -> InboxHub:
    """The hub of the running event loop (one per process under an ASGI server)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None or found._closed:
        found = _hubs[loop] = InboxHub(redis_url())
    return found


async def hub_close() -> None:
    found = _hubs.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


# --- the access check and the counts: Django, in its sync thread, once per connect ---


class _Access:
    """What the access check found: the subscription, and whether the request's Origin may
    read the answer (accounts.cors: the key's application lists it), known once the key is,
    so that a refusal after that point is readable by the page too."""

    __slots__ = ("subscription", "cors_origin")

    def __init__(self) -> None:
        self.subscription = None
        self.cors_origin: str | None = None


def _authorize(
    *,
    access: _Access,
    raw_key: str | None,
    subscription_id: UUID,
    user_hash: str | None,
    origin: str | None,
) -> None:
    """Fills `access` with the subscription this stream may read
    (messaging.inbox.access.inbox_subscription) for the raw key of the request, and the CORS
    decision for its Origin; domain errors as the API maps them."""
    from accounts.cors import origin_allowed
    from accounts.selectors import api_key_get_active
    from accounts.services import api_key_touch
    from core.exceptions import AuthenticationFailed

    from .access import inbox_subscription

    close_old_connections()
    try:
        api_key = api_key_get_active(raw=raw_key) if raw_key else None
        if api_key is None:
            raise AuthenticationFailed(
                "A valid API key is required: the X-API-Key header or the api_key parameter."
                if not raw_key
                else "The API key is unknown or revoked."
            )
        if origin_allowed(api_key=api_key, origin=origin):
            access.cors_origin = origin
        api_key_touch(api_key=api_key)
        access.subscription = inbox_subscription(
            api_key=api_key, subscription_id=subscription_id, user_hash=user_hash
        )
    finally:
        close_old_connections()


def _origin_listed(origin: str | None) -> bool:
    from accounts.cors import origin_listed

    close_old_connections()
    try:
        return origin_listed(origin)
    finally:
        close_old_connections()


def _counts_text(subscription) -> str:
    from .selectors import inbox_count_get
    from .shape import count_json

    close_old_connections()
    try:
        return json.dumps(count_json(*inbox_count_get(subscription=subscription)))
    finally:
        close_old_connections()


# --- the stream ---


class _Refused(Exception):
    def __init__(
        self, status: int, code: str, message: str, details=None, headers=(), cors_origin=None
    ):
        super().__init__(message)
        self.status, self.body = (
            status,
            {"error": {"code": code, "message": message, "details": details or {}}},
        )
        self.headers = list(headers)
        self.cors_origin = cors_origin


def _headers_of(scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    """Vary: Origin always (the answer depends on it), and the CORS headers when allowed."""
    from accounts.cors import response_headers

    return [(b"vary", b"Origin"), *(response_headers(origin) if origin else ())]


def _request_of(scope) -> tuple[UUID, str | None, str | None, str | None]:
    """(subscription_id, raw key, user hash, Last-Event-ID) from the headers, else the query
    string (EventSource cannot set headers)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers = _headers_of(scope)

    def one(header: str | None, param: str) -> str | None:
        if header and headers.get(header):
            return headers[header]
        values = query.get(param)
        return values[-1] if values else None

    raw_id = one(None, "subscription_id")
    if not raw_id:
        raise _Refused(
            400, "validation_error", "The request has invalid fields.",
            {"subscription_id": ["This field is required."]},
        )  # fmt: skip
    try:
        subscription_id = UUID(raw_id)
    except ValueError:
        raise _Refused(
            400, "validation_error", "The request has invalid fields.",
            {"subscription_id": ["Must be a valid UUID."]},
        ) from None  # fmt: skip
    return (
        subscription_id,
        one("x-api-key", "api_key"),
        one("x-user-hash", "user_hash"),
        one("last-event-id", "last_event_id"),
    )


async def _refuse(send, refused: _Refused) -> None:
    body = json.dumps(refused.body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_cors_headers(refused.cors_origin),
        *refused.headers,
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _check(scope) -> tuple[_Access, str | None]:
    """(access, Last-Event-ID) or _Refused."""
    from accounts.services import PREFIX_LENGTH
    from core.api import database_unavailable, status_of
    from core.exceptions import ApplicationError, RetryLater

    subscription_id, raw_key, user_hash, last_event_id = _request_of(scope)
    access = _Access()
    try:
        await sync_to_async(_authorize)(
            access=access,
            raw_key=raw_key,
            subscription_id=subscription_id,
            user_hash=user_hash,
            origin=_headers_of(scope).get("origin"),
        )
    except ApplicationError as exc:
        status = status_of(exc)
        headers = []
        if status == 401:
            headers.append((b"www-authenticate", b"X-API-Key"))
        if isinstance(exc, RetryLater):
            headers.append((b"retry-after", str(exc.retry_after).encode()))
        raise _Refused(
            status, exc.code, exc.message, exc.details, headers, cors_origin=access.cors_origin
        ) from None
    except Exception as exc:
        if database_unavailable(exc):
            raise _Refused(
                503, "service_unavailable", "The database cannot be reached; retry shortly.",
                headers=[(b"retry-after", b"5")],
            ) from None  # fmt: skip
        logger.exception("The inbox stream's access check failed")
        raise _Refused(
            500, "internal_error", "An internal error occurred; it has been logged."
        ) from None
    # The stream's lines name its key by its prefix, as the API's do (accounts.api.auth).
    structlog.contextvars.bind_contextvars(api_key=raw_key[:PREFIX_LENGTH])
    return access, last_event_id


async def _catch_up(the_hub: InboxHub, subscription, channel: str, last: str | None):
    """What a stream sends before (or between) live events, and its new last id: with no
    Last-Event-ID, an id-only event (the client's resume point, no data); with one the Redis
    stream can answer for, the entries after it; else a `count` event with the counts now."""
    redis = the_hub.commands
    pipe = redis.pipeline(transaction=True)
    pipe.time()
    pipe.xinfo_stream(channel)
    now, info = await pipe.execute(raise_on_error=False)
    if isinstance(now, Exception):
        raise now
    if isinstance(info, Exception):
        info = None  # no such stream (expired, or never written)
    now_ms = now[0] * 1000 + now[1] // 1000
    # Everything after this id is either in the stream or will come live.
    top = info["last-generated-id"] if info else f"{max(now_ms - 1, 0)}-0"

    if last is None:
        return [f"id: {top}\n\n".encode()], top
    position = parse_id(last)
    stale = (
        position is None
        or info is None
        or position[0] < now_ms - replay_seconds() * 1000
        # Ahead of the stream (Redis lost data, or another Redis): the ids start over lower.
        or position > parse_id(top)
        or (
            # Entries were trimmed (Redis < 7 does not say: assume so), and maybe after it.
            info.get("entries-added", info["length"] + 1) > info["length"]
            and info.get("first-entry") is not None
            and position < parse_id(info["first-entry"][0])
        )
    )
    if stale:
        counts = await sync_to_async(_counts_text)(subscription)
        return [frame(top, "count", counts)], top
    frames = []
    cursor = last
    while True:
        entries = await redis.xrange(channel, min=f"({cursor}", max="+", count=REPLAY_PAGE)
        for entry_id, fields in entries:
            frames.append(frame(entry_id, fields.get("event", "message"), fields.get("data", "")))
            cursor = entry_id
        if len(entries) < REPLAY_PAGE:
            break
    return frames, cursor


def _body(chunk: bytes) -> dict:
    return {"type": "http.response.body", "body": chunk, "more_body": True}


async def _pump(send, subscription, last_event_id: str | None, cors_origin: str | None) -> None:
    the_hub = hub()
    channel = key_of(subscription.pk)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache, no-transform"),
                (b"x-accel-buffering", b"no"),  # nginx: do not buffer this response
                *_cors_headers(cors_origin),
            ],
        }
    )
    await send(_body(f"retry: {RETRY_MILLISECONDS}\n\n".encode()))
    heartbeat = heartbeat_seconds()
    try:
        async with the_hub.listening(channel) as listener:
            frames, last = await _catch_up(the_hub, subscription, channel, last_event_id)
            if frames:
                await send(_body(b"".join(frames)))
            position = parse_id(last)
            while not listener.closed:
                try:
                    async with asyncio.timeout(heartbeat):
                        item = await listener.queue.get()
                except TimeoutError:
                    await send(_body(b": keep-alive\n\n"))
                    continue
                if listener.resync:
                    listener.resync = False
                    while not listener.queue.empty():
                        listener.queue.get_nowait()
                    frames, last = await _catch_up(the_hub, subscription, channel, last)
                    position = parse_id(last)
                    if frames:
                        await send(_body(b"".join(frames)))
                    continue
                if item is _RESYNC:
                    continue
                item_position, data = item
                if item_position <= position:
                    continue  # already sent by the replay
                position, last = item_position, data[4 : data.index(b"\n")].decode()
                await send(_body(data))
    except TimeoutError:
        logger.warning("Inbox stream: Redis did not confirm the SUBSCRIBE; closing the stream")
    except RedisError as exc:
        logger.warning("Inbox stream: Redis error (%s); closing the stream", exc)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def stream(scope, receive, send) -> None:
    """The ASGI app of `GET /api/v1/inbox/stream`."""
    if scope["method"] == "OPTIONS":
        # A CORS preflight (EventSource sends none; a fetch()-based client with headers does):
        # it carries no key, so it is answered for an origin some application lists, as the
        # API's are (accounts.cors); the GET that follows is checked against its key.
        from accounts.cors import preflight_headers

        origin = _headers_of(scope).get("origin")
        headers = [(b"vary", b"Origin")]
        if origin and await sync_to_async(_origin_listed)(origin):
            headers += preflight_headers(origin, methods=("GET",))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["method"] != "GET":
        await _refuse(
            send,
            _Refused(
                405, "method_not_allowed", "Method not allowed.", headers=[(b"allow", b"GET")]
            ),
        )
        return
    try:
        access, last_event_id = await _check(scope)
    except _Refused as refused:
        await _refuse(send, refused)
        return
    pump = asyncio.ensure_future(
        _pump(send, access.subscription, last_event_id, access.cors_origin)
    )
    watch = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watch):
            task.cancel()
        results = await asyncio.gather(pump, watch, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, OSError):
            logger.error("Inbox stream ended with an error", exc_info=result)


def wsgi_answer(request):
    """The WSGI app's answer on the stream's path: an open stream must not hold a WSGI
    worker, so it is served by the ASGI processes only."""
    details = {"asgi_app": ASGI_APP}
    # The ASGI process's base URL where it is not this origin (`make run`: its own port).
    base = (getattr(settings, "INBOX_STREAM_URL", "") or "").rstrip("/")
    if base:
        details["stream_url"] = f"{base}{PATH}"
    return JsonResponse(
        {
            "error": {
                "code": "not_found",
                "message": (
                    f"{PATH} is served by the ASGI app ({ASGI_APP}, e.g. hypercorn), not by "
                    "the WSGI workers: route this path to the ASGI processes."
                ),
                "details": details,
            }
        },
        status=404,
    )
