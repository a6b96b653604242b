"""The inbox's SSE stream (messaging.inbox.stream) through a real hypercorn serving
signal_project.asgi:application on 127.0.0.1, read by a real HTTP client (aiohttp), with
events published by messaging.inbox.events into real Redis.

hypercorn runs in a thread of this process (its own event loop), so that the tests can look
at its hub (one pub/sub connection, the listeners) and its tasks; the data is committed
(transactional tests) because the server's thread has its own database connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time

import aiohttp
import pytest
import redis
from django.conf import settings as django_settings

from messaging.inbox import events, stream
from messaging.models import InboxCount
from tests.conftest import application_with_keys, subscription_create

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Hypercorn:
    """hypercorn.asyncio.serve(signal_project.asgi.application) in a thread, on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        from signal_project.asgi import application

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.graceful_timeout = 1
        config.accesslog = None
        asyncio.set_event_loop(self.loop)

        async def main():
            self._stop = asyncio.Event()
            await serve(application, config, shutdown_trigger=self._stop.wait)

        self.loop.run_until_complete(main())

    def start(self) -> Hypercorn:
        self._thread.start()
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            assert time.monotonic() < deadline, "hypercorn did not listen"
            time.sleep(0.05)

    def stop(self) -> None:
        from asgiref.sync import sync_to_async
        from django.db import connections

        # The database connection of the server's sync thread (the access checks ran there).
        asyncio.run_coroutine_threadsafe(sync_to_async(connections.close_all)(), self.loop).result(
            10
        )
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive()

    def call(self, function):
        """function() in the server's loop (its hub, its tasks), from the test's thread."""

        async def run():
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def hub(self) -> stream.InboxHub | None:
        return self.call(lambda: stream._hubs.get(asyncio.get_running_loop()))

    def stream_tasks(self) -> int:
        """Tasks of the server's loop running the stream's code."""
        return self.call(
            lambda: sum(
                1
                for task in asyncio.all_tasks()
                if task.get_coro().__qualname__ in ("_pump", "_until_disconnect")
            )
        )


@pytest.fixture
def inbox_settings(settings):
    settings.INBOX_REDIS_URL = settings.REDIS_URL
    settings.INBOX_HEARTBEAT_SECONDS = 15
    settings.INBOX_REPLAY_SECONDS = 86400
    return settings


@pytest.fixture
def server(inbox_settings):
    running = Hypercorn().start()
    yield running
    running.stop()


@pytest.fixture
def inbox():
    """An application with an InAppMessage subscription (its inbox)."""
    app = application_with_keys()
    subscription = subscription_create(app.application, type="InAppMessage", token="device-1")
    return app, subscription


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(django_settings.INBOX_REDIS_URL)


def publish(subscription, *items: str) -> list[str]:
    """A `message` event per title; their stream entry ids."""
    ids = events.publish(
        [
            events.InboxEvent(str(subscription.pk), events.MESSAGE, {"id": title, "title": title})
            for title in items
        ]
    )
    assert len(ids) == len(items)
    return ids


class Sse:
    """An SSE reader over an aiohttp response: events (id, event, data) and comments."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 2.0) -> dict:
        block: dict = {}
        async with asyncio.timeout(timeout):
            while True:
                line = await self.response.content.readline()
                if not line:
                    raise EOFError("the stream ended")
                text = line.decode().rstrip("\n")
                if text == "":
                    if block:
                        return block
                    continue
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    return {"comment": value}
                block[name] = block[name] + "\n" + value if name in block else value

    async def next_event(self, timeout: float = 2.0) -> dict:
        """The next event with data (skipping comments and id-only blocks)."""
        while True:
            block = await self.next(timeout)
            if "data" in block:
                return block


@contextlib.asynccontextmanager
async def opened(server, subscription, key: str, *, headers=None, **params):
    """An open stream (status 200), its `retry:` hint and first block read."""
    query = {"subscription_id": str(subscription.pk), **params}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{server.url}{stream.PATH}",
            params=query,
            headers={"X-API-Key": key, **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        ) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        sse = Sse(response)
        assert await sse.next() == {"retry": "3000"}
        yield sse


def titles_of(received: list[dict]) -> list[str]:
    return [json.loads(block["data"])["title"] for block in received]


def test_an_event_arrives_within_a_second_of_its_publish(server, inbox):
    app, subscription = inbox

    async def scenario():
        async with opened(server, subscription, app.client.raw) as sse:
            start = await sse.next()  # the resume point: an id only, no data
            assert set(start) == {"id"}
            published_at = time.monotonic()
            (entry_id,) = await asyncio.to_thread(publish, subscription, "hello")
            event = await sse.next_event(timeout=1.0)
            latency = time.monotonic() - published_at
            assert event["id"] == entry_id
            assert event["event"] == "message"
            assert titles_of([event]) == ["hello"]
            assert latency < 1.0

    asyncio.run(scenario())


def test_the_key_may_come_in_the_query_string_as_eventsource_sends_it(server, inbox):
    app, subscription = inbox

    async def scenario():
        async with aiohttp.ClientSession() as session:
            query = f"subscription_id={subscription.pk}&api_key={app.client.raw}"
            url = f"{server.url}{stream.PATH}?{query}"
            async with session.get(url) as response:
                assert response.status == 200
                # No Origin (not a browser's cross-origin call): no CORS headers.
                assert "Access-Control-Allow-Origin" not in response.headers
                sse = Sse(response)
                assert await sse.next() == {"retry": "3000"}

    asyncio.run(scenario())


SHOP = "https://shop.example.com"


def _allow(app, *origins: str) -> None:
    from accounts.audit import SYSTEM
    from accounts.cors import listed_origins_forget
    from accounts.services import application_settings_update

    application_settings_update(
        application=app.application, actor=SYSTEM, allowed_origins=list(origins)
    )
    listed_origins_forget()


def _stream_headers(url: str, **headers) -> tuple[int, dict]:
    async def scenario():
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status, dict(response.headers)

    return asyncio.run(scenario())


def test_the_stream_lets_a_listed_origin_read_it_with_a_client_key_only(server, inbox):
    app, subscription = inbox
    other = application_with_keys()
    _allow(app, SHOP)
    _allow(other, "https://other.example.com")
    base = f"{server.url}{stream.PATH}?subscription_id={subscription.pk}"

    status, headers = _stream_headers(f"{base}&api_key={app.client.raw}", Origin=SHOP)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in headers["Vary"]
    # Another application's origin, an unlisted one, a server key: no CORS header.
    for origin, key in (
        ("https://other.example.com", app.client.raw),
        ("https://evil.example.com", app.client.raw),
        (SHOP, app.server.raw),
    ):
        status, headers = _stream_headers(f"{base}&api_key={key}", Origin=origin)
        assert status == 200, origin
        assert "Access-Control-Allow-Origin" not in headers, (origin, key[:3])
    # A refusal once the key is known is readable by the page; an unknown key's is not.
    status, headers = _stream_headers(
        f"{server.url}{stream.PATH}?subscription_id={other.application.pk}"
        f"&api_key={app.client.raw}",
        Origin=SHOP,
    )
    assert (status, headers["Access-Control-Allow-Origin"]) == (404, SHOP)
    status, headers = _stream_headers(f"{base}&api_key=ck_unknown", Origin=SHOP)
    assert status == 401 and "Access-Control-Allow-Origin" not in headers


def test_a_cors_preflight_is_answered_for_a_listed_origin_only(server, inbox):
    app, _subscription = inbox
    _allow(app, SHOP)

    async def preflight(origin: str):
        async with (
            aiohttp.ClientSession() as session,
            session.options(
                f"{server.url}{stream.PATH}",
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            ) as response,
        ):
            return response.status, dict(response.headers)

    status, headers = asyncio.run(preflight(SHOP))
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert headers["Access-Control-Allow-Methods"] == "GET"
    for name in ("x-api-key", "x-user-hash", "last-event-id"):
        assert name in headers["Access-Control-Allow-Headers"]
    status, headers = asyncio.run(preflight("https://evil.example.com"))
    assert status == 204 and "Access-Control-Allow-Origin" not in headers


def test_a_cut_stream_resumed_with_last_event_id_misses_nothing_and_repeats_nothing(server, inbox):
    app, subscription = inbox

    async def scenario():
        async with opened(server, subscription, app.server.raw) as sse:
            await sse.next()
            await asyncio.to_thread(publish, subscription, "one")
            first = await sse.next_event()
        # Cut: published while no stream is open.
        await asyncio.to_thread(publish, subscription, "two", "three")
        async with opened(
            server, subscription, app.server.raw, headers={"Last-Event-ID": first["id"]}
        ) as sse:
            replayed = [await sse.next_event(), await sse.next_event()]
            assert titles_of(replayed) == ["two", "three"]
            await asyncio.to_thread(publish, subscription, "four")
            live = await sse.next_event()
            assert titles_of([live]) == ["four"]
            with pytest.raises(TimeoutError):
                await sse.next_event(timeout=0.5)
        # The same from the query string (a new EventSource cannot send the header).
        async with opened(
            server, subscription, app.server.raw, last_event_id=replayed[0]["id"]
        ) as sse:
            assert titles_of([await sse.next_event(), await sse.next_event()]) == [
                "three",
                "four",
            ]

    asyncio.run(scenario())


def test_events_published_while_a_stream_resumes_arrive_once_each_in_order(server, inbox):
    """Subscribe-then-replay: events published during the replay come either from the Redis
    stream or live, never both and never neither."""
    app, subscription = inbox
    (before,) = publish(subscription, "before")
    titles = [f"m{n}" for n in range(60)]

    async def publisher():
        for title in titles:
            await asyncio.to_thread(publish, subscription, title)
            await asyncio.sleep(0.002)

    async def scenario():
        task = asyncio.create_task(publisher())
        await asyncio.sleep(0.02)
        received = []
        async with opened(server, subscription, app.server.raw, last_event_id=before) as sse:
            while len(received) < len(titles):
                received.append(await sse.next_event(timeout=3))
            await task
            with pytest.raises(TimeoutError):
                await sse.next_event(timeout=0.3)
        assert titles_of(received) == titles
        ids = [stream.parse_id(block["id"]) for block in received]
        assert ids == sorted(set(ids))

    asyncio.run(scenario())


def test_a_last_event_id_older_than_the_stream_gets_the_current_counts(server, inbox):
    app, subscription = inbox
    InboxCount.objects.create(subscription=subscription, unread=3, total=5)
    publish(subscription, "kept")

    async def scenario():
        async with opened(server, subscription, app.server.raw, last_event_id="1-0") as sse:
            event = await sse.next_event()
            assert event["event"] == "count"
            assert json.loads(event["data"]) == {"unread": 3, "total": 5}
            # Its id is the stream's newest entry: the client resumes from there.
            newest = redis_client().xrevrange(stream.key_of(subscription.pk), count=1)[0][0]
            assert event["id"] == newest.decode()

    asyncio.run(scenario())


def test_a_last_event_id_ahead_of_the_stream_starts_over_from_the_counts(server, inbox):
    """A Redis that lost data numbers new entries below ids the clients hold: they must not
    be dropped as already sent."""
    app, subscription = inbox
    (newest,) = publish(subscription, "kept")
    ms, _, _ = newest.partition("-")

    async def scenario():
        ahead = f"{int(ms) + 60_000}-0"
        async with opened(server, subscription, app.server.raw, last_event_id=ahead) as sse:
            event = await sse.next_event()
            assert (event["event"], event["id"]) == ("count", newest)
            await asyncio.to_thread(publish, subscription, "next")
            assert titles_of([await sse.next_event()]) == ["next"]

    asyncio.run(scenario())


def test_a_server_restart_loses_nothing_within_the_replay_window(inbox_settings, inbox):
    app, subscription = inbox

    async def read_one(srv, **params):
        async with opened(srv, subscription, app.server.raw, **params) as sse:
            await sse.next()
            if not params:
                await asyncio.to_thread(publish, subscription, "before restart")
            return await sse.next_event()

    first_server = Hypercorn().start()
    try:
        before = asyncio.run(read_one(first_server))
    finally:
        first_server.stop()
    publish(subscription, "while down")
    second_server = Hypercorn().start()
    try:

        async def resume():
            async with opened(
                second_server, subscription, app.server.raw, last_event_id=before["id"]
            ) as sse:
                return await sse.next_event()

        assert titles_of([asyncio.run(resume())]) == ["while down"]
    finally:
        second_server.stop()


def test_a_keep_alive_comment_every_heartbeat(server, inbox, inbox_settings):
    app, subscription = inbox
    inbox_settings.INBOX_HEARTBEAT_SECONDS = 0.3

    async def scenario():
        async with opened(server, subscription, app.server.raw) as sse:
            await sse.next()
            started = time.monotonic()
            assert await sse.next(timeout=1) == {"comment": "keep-alive"}
            assert await sse.next(timeout=1) == {"comment": "keep-alive"}
            assert time.monotonic() - started < 1.5

    asyncio.run(scenario())


def test_an_unknown_or_missing_key_is_401(server, inbox):
    _, subscription = inbox

    async def scenario():
        async with aiohttp.ClientSession() as session:
            for headers in ({"X-API-Key": "sk_nope"}, {}):
                async with session.get(
                    f"{server.url}{stream.PATH}",
                    params={"subscription_id": str(subscription.pk)},
                    headers=headers,
                ) as response:
                    assert response.status == 401
                    body = await response.json()
                    assert body["error"]["code"] == "authentication_failed"

    asyncio.run(scenario())


def test_another_applications_subscription_is_404(server, inbox):
    _, subscription = inbox
    other = application_with_keys()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{server.url}{stream.PATH}",
                params={"subscription_id": str(subscription.pk), "api_key": other.server.raw},
            ) as response:
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "not_found"
            async with session.get(
                f"{server.url}{stream.PATH}",
                params={"subscription_id": "not-a-uuid", "api_key": other.server.raw},
            ) as response:
                assert response.status == 400

    asyncio.run(scenario())


def test_a_closed_stream_leaves_no_task_and_no_subscription(server, inbox):
    app, subscription = inbox
    channel = stream.key_of(subscription.pk)

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):
                sse = await stack.enter_async_context(opened(server, subscription, app.server.raw))
                await sse.next()
            assert server.stream_tasks() == 6
            assert len(server.hub().listeners[channel]) == 3
            assert redis_client().pubsub_numsub(channel)[0][1] == 1

    asyncio.run(scenario())
    deadline = time.monotonic() + 3
    while server.stream_tasks() or server.hub().listeners:
        assert time.monotonic() < deadline, "the closed streams' tasks or listeners remain"
        time.sleep(0.05)
    assert redis_client().pubsub_numsub(channel)[0][1] == 0


def test_many_streams_in_one_process_share_one_pubsub_connection(server):
    app = application_with_keys()
    subscriptions = [
        subscription_create(app.application, type="InAppMessage", token=f"device-{n}")
        for n in range(20)
    ]

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            readers = []
            for n in range(200):
                subscription = subscriptions[n % 20]
                sse = await stack.enter_async_context(opened(server, subscription, app.server.raw))
                await sse.next()
                readers.append((subscription, sse))
            hub = server.hub()
            assert hub.connects == 1
            assert sum(len(listeners) for listeners in hub.listeners.values()) == 200
            numsub = redis_client().pubsub_numsub(*(stream.key_of(s.pk) for s in subscriptions))
            assert [count for _, count in numsub] == [1] * 20
            for subscription in subscriptions:
                await asyncio.to_thread(publish, subscription, f"to {subscription.pk}")
            events = await asyncio.gather(*(sse.next_event(timeout=3) for _, sse in readers))
            assert titles_of(events) == [f"to {s.pk}" for s, _ in readers]

    asyncio.run(scenario())


def test_events_published_while_the_pubsub_connection_is_down_arrive_after_it_returns(
    server, inbox
):
    app, subscription = inbox

    async def scenario():
        async with opened(server, subscription, app.server.raw) as sse:
            await sse.next()
            hub = server.hub()

            async def drop():
                await hub._conn.disconnect()

            asyncio.run_coroutine_threadsafe(drop(), server.loop).result(5)
            await asyncio.to_thread(publish, subscription, "during the outage")
            event = await sse.next_event(timeout=3)
            assert titles_of([event]) == ["during the outage"]
            with pytest.raises(TimeoutError):
                await sse.next_event(timeout=0.5)
            assert hub.connects == 2

    asyncio.run(scenario())


def test_the_asgi_app_serves_the_rest_of_the_api_through_django(server, inbox):
    app, _ = inbox

    async def scenario():
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{server.url}/api/v1/applications/current", headers={"X-API-Key": app.server.raw}
            ) as response,
        ):
            assert response.status == 200
            assert (await response.json())["id"] == str(app.application.pk)

    asyncio.run(scenario())


def test_the_wsgi_app_answers_the_stream_path_with_where_it_is_served(client, settings):
    settings.INBOX_STREAM_URL = "http://127.0.0.1:8001"
    response = client.get("/api/v1/inbox/stream?subscription_id=x")
    assert response.status_code == 404
    body = response.json()["error"]
    assert "ASGI" in body["message"]
    assert body["details"]["stream_url"] == "http://127.0.0.1:8001/api/v1/inbox/stream"


def test_under_identity_verification_a_client_key_needs_the_users_hash(server):
    from accounts.identity import user_hash

    app = application_with_keys()
    app.application.identity_verification = True
    app.application.identity_secret = "the-secret"
    app.application.save()
    subscription = subscription_create(
        app.application, type="InAppMessage", token="device-kim", external_user_id="kim"
    )
    right = user_hash("the-secret", "kim")

    async def status(**params) -> int:
        headers = params.pop("headers", {})
        query = {"subscription_id": str(subscription.pk), "api_key": app.client.raw, **params}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}{stream.PATH}", params=query, headers=headers) as response,
        ):
            return response.status

    async def scenario():
        assert await status() == 401
        assert await status(user_hash="0" * 64) == 401
        assert await status(user_hash=right) == 200
        assert await status(headers={"X-User-Hash": right}) == 200

    asyncio.run(scenario())


def test_a_stream_whose_queue_overflows_rereads_the_redis_stream(server, inbox, monkeypatch):
    """Events that outrun a stream's queue are not dropped: it rereads them from Redis."""
    app, subscription = inbox
    monkeypatch.setattr(stream, "QUEUE_SIZE", 2)
    titles = [f"burst {n}" for n in range(40)]

    async def scenario():
        async with opened(server, subscription, app.server.raw) as sse:
            await sse.next()
            # One pipeline: the PUBLISHes reach the hub in one read, faster than the stream.
            await asyncio.to_thread(publish, subscription, *titles)
            received = [await sse.next_event(timeout=3) for _ in titles]
            assert titles_of(received) == titles
            with pytest.raises(TimeoutError):
                await sse.next_event(timeout=0.3)

    asyncio.run(scenario())


def test_a_server_shutdown_ends_open_streams_within_the_graceful_timeout(inbox_settings, inbox):
    """hypercorn does not tell the app it is stopping: it waits `graceful_timeout` (1 s here),
    then drops the open streams, and EventSource reconnects (elsewhere) with Last-Event-ID."""
    app, subscription = inbox
    srv = Hypercorn().start()

    async def scenario():
        async with opened(srv, subscription, app.server.raw) as sse:
            await sse.next()
            started = time.monotonic()
            stopping = asyncio.get_running_loop().run_in_executor(None, srv.stop)
            with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                while True:
                    await sse.next(timeout=10)
            assert time.monotonic() - started < 5
            await stopping
        assert srv.loop not in stream._hubs  # the lifespan's shutdown closed its hub

    asyncio.run(scenario())
