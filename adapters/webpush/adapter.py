"""`WebPushAdapter`: one request per message to its endpoint's push service, through one
connection pool per origin."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import http_ece

from adapters.asyncio_adapter import AsyncBatchAdapter, ClosingLRU, timed_request
from adapters.base import (
    TEXT,
    TEXT_OR_NULL,
    Credentials,
    OutboundMessage,
    SendResult,
    object_schema,
)
from adapters.errors import (
    local_failure,
)
from adapters.transport.http_client import HTTPPool
from adapters.transport.proxy import proxy_for
from adapters.webpush.content import (
    MAX_BODY,
    MAX_PLAINTEXT,
    content_of,
    encrypt_payload,
    payload_of,
    topic_of,
    ttl_of,
)
from adapters.webpush.errors import WEB_PUSH_ERRORS, classify_webpush, webpush_failure
from adapters.webpush.subscription import AllowedHosts, check_endpoint
from adapters.webpush.vapid import Vapid, b64url_decode, clean_credentials, vapid_from

_STATIC_HEADERS = (
    (b"content-encoding", b"aes128gcm"),
    (b"content-type", b"application/octet-stream"),
)


class WebPushAdapter(AsyncBatchAdapter):
    """Sends Web Push messages to the browsers' push services (or any listed endpoint).

    A batch starts no request after `send_rounds - 1` timeouts: what is unsent then fails
    `timeout` (temporary) and goes back to the queue, so the batch ends within `send_rounds`
    timeouts, inside the delivery task's soft limit, however large it is."""

    channel = "WebPush"
    errors = WEB_PUSH_ERRORS
    secret_fields = ("vapid_private_key",)
    content_schema = object_schema(
        "title, body and the web_push part's url and icon.",
        {"title": TEXT, "body": TEXT, "url": TEXT_OR_NULL, "icon": TEXT_OR_NULL},
    )
    send_rounds = 7

    def __init__(
        self,
        allowed_hosts: Sequence[str] = (),
        *,
        timeout: float = 10.0,
        concurrency: int = 100,
        max_origins: int = 64,
        ca_file: str | None = None,
    ) -> None:
        """`allowed_hosts`: as WEB_PUSH_ALLOWED_HOSTS; `concurrency`: requests in flight per
        batch; `max_origins`: push service origins with open connections (past it the least
        recently used is closed, once its requests in flight are answered); `ca_file`: CA
        bundle for https:// endpoints (default: the system's)."""
        super().__init__()
        self.allowed_hosts = tuple(allowed_hosts)
        self._allowed = AllowedHosts.of(self.allowed_hosts)
        self.timeout = timeout
        self.concurrency = max(1, int(concurrency))
        self.max_origins = max_origins
        self.ca_file = ca_file or None
        self._pools = ClosingLRU(max_origins, self._retire)
        self._in_flight: dict[HTTPPool, int] = {}  # pool -> its requests waiting for answers
        self._retired: set[HTTPPool] = set()  # evicted, closed when their last answer comes
        self._pools_loop: asyncio.AbstractEventLoop | None = None
        self._protocols: dict[str, str] = {}

    # The channel's credential schema and what a message looks like on it (used to send
    # and to preview alike): the adapter's own functions.
    clean_credentials = staticmethod(clean_credentials)
    content_of = staticmethod(content_of)

    @classmethod
    def from_settings(cls, settings: Any) -> WebPushAdapter:
        return cls(
            getattr(settings, "WEB_PUSH_ALLOWED_HOSTS", ()),
            timeout=float(getattr(settings, "WEB_PUSH_TIMEOUT", 10.0)),
            concurrency=int(getattr(settings, "WEB_PUSH_CONCURRENCY", 100)),
        )

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        vapid: Vapid = self._client(credentials)
        return await self._each(
            messages, partial(self._send_one, vapid), min(self.concurrency, len(messages))
        )

    def _build_client(self, values: Mapping[str, Any]) -> Vapid:
        return vapid_from(values)

    async def _close(self) -> None:
        await super()._close()
        pools = [*self._pools.values(), *self._retired]
        self._pools = ClosingLRU(self.max_origins, self._retire)
        self._in_flight, self._retired = {}, set()
        for pool in pools:
            await pool.aclose()

    async def _close_client(self, client: Vapid) -> None:
        client.tokens.clear()  # the connections belong to the origins' pools

    async def _send_one(self, vapid: Vapid, message: OutboundMessage) -> SendResult:
        message_id = message.message_id
        problem, origin, path = check_endpoint(message.token, self._allowed)
        if problem is not None:
            return webpush_failure(message_id, "endpoint_not_allowed", problem)
        payload = payload_of(message)
        if len(payload) > MAX_PLAINTEXT:
            return local_failure(
                message_id,
                "payload_too_large",
                f"the encrypted payload would be {len(payload) + MAX_BODY - MAX_PLAINTEXT} "
                f"octets; push services accept {MAX_BODY}",
            )
        keys = message.keys
        try:
            p256dh = b64url_decode(keys.get("p256dh"))
            auth = b64url_decode(keys.get("auth"))
            if len(p256dh) != 65 or len(auth) != 16:
                raise ValueError("wrong length")
            body = encrypt_payload(payload, p256dh, auth)
        except (ValueError, TypeError, AttributeError, http_ece.ECEException) as exc:
            return webpush_failure(message_id, "subscription_keys_invalid", str(exc))

        try:
            pool = self._pool(origin)
        except ValueError as exc:  # an unusable HTTPS_PROXY / HTTP_PROXY setting
            return local_failure(message_id, "network_error", f"proxy setting: {exc}")
        headers = [
            (b":method", b"POST"),
            (b":scheme", pool.scheme),
            (b":authority", pool.authority),
            (b":path", path.encode("ascii")),
            (b"ttl", str(ttl_of(message.ttl)).encode()),
            (b"urgency", b"high" if message.priority == "high" else b"normal"),
            *_STATIC_HEADERS,
            (b"authorization", vapid.authorization(origin)),
        ]
        if message.collapse_id:
            headers.append((b"topic", topic_of(message.collapse_id).encode("ascii")))
        in_flight = self._in_flight
        in_flight[pool] = in_flight.get(pool, 0) + 1
        try:
            answered = await timed_request(
                pool, headers, body, timeout=self.timeout, message_id=message_id
            )
        finally:
            left = in_flight[pool] - 1
            if left:
                in_flight[pool] = left
            else:
                del in_flight[pool]
                if pool in self._retired:
                    self._retired.discard(pool)
                    pool.close()
        if isinstance(answered, SendResult):
            return answered
        (status, response_headers, response_body), latency_ms = answered
        return classify_webpush(
            message_id, status, response_headers, response_body, latency_ms=latency_ms
        )

    def _pool(self, origin: str) -> HTTPPool:
        """The connections to one push service origin on this loop, opened on first use."""
        loop = asyncio.get_running_loop()
        if self._pools_loop is not loop:  # first use, or a forked child's new loop
            self._pools = ClosingLRU(self.max_origins, self._retire)
            self._in_flight, self._retired = {}, set()
            self._pools_loop = loop
        pool = self._pools.get(origin)
        if pool is not None:
            return pool
        pool = HTTPPool(
            origin,
            timeout=self.timeout,
            max_connections=2,
            max_streams=self.concurrency,
            http1_connections=self.concurrency,
            ca_file=self.ca_file,
            proxy=proxy_for(origin),
            protocols=self._protocols,
            never_indexed=(b":path", b"topic"),
        )
        self._pools[origin] = pool
        return pool

    def _retire(self, pool: HTTPPool) -> None:
        """An origin's pool pushed out of `_pools`: closed now, or after its last answer."""
        if pool in self._in_flight:
            self._retired.add(pool)
        else:
            pool.close()
