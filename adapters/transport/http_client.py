"""One origin in whichever protocol its server speaks: HTTP/2 where it can, else HTTP/1.1.

`HTTPPool.request(headers, body)` is `HTTP2Pool.request` (`adapters.transport.http2_client`)
or `HTTP1Pool.request` (`adapters.transport.http1_client`, aiohttp), bound directly once the
protocol is known, so an HTTP/2 request costs nothing more than it would without the choice.

The first HTTP/2 connection is the probe. Over TLS, ALPN offers `h2` and `http/1.1` and the
server's pick decides; over cleartext, the connection opens with the HTTP/2 preface (prior
knowledge), and the server's SETTINGS frame says h2, an HTTP/1 answer or a close says
HTTP/1.1. Requests that arrive meanwhile wait for that one connection; none is written before
the answer, so none can be misread by the server, and the ones that waited are each sent
once, on HTTP/1.1 if that is what the server speaks. The answer is kept for the pool's life
(HTTP/1.1 also in `protocols`, shared by the pools of one adapter: one probe per origin) until a
connection fails: an HTTP/1.1 request that got no answer (not sent again: the server may
have processed it) sends the next ones to HTTP/2 first, whose connection probes again.
Without an answer at all (refused, timed out) nothing is decided.

With a proxy: `https://` origins go through a CONNECT tunnel on either protocol; `http://`
origins go through it as a forward proxy in HTTP/1.1 (HTTP/2 prior knowledge is per hop, and
proxies commonly refuse CONNECT to ports other than 443), so no probe is made.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from adapters.transport.http1_client import HTTP1Pool
from adapters.transport.http2_client import (
    Headers,
    HTTP2Pool,
    NotHTTP2Error,
    Outcome,
    Response,
    each_with_timeout,
)
from adapters.transport.proxy import Proxy

H2 = "h2"
HTTP1 = "http/1.1"


class HTTPPool:
    """Connections to one origin (`https://host[:port]` or `http://host[:port]`)."""

    request: Callable[[Headers, bytes], Awaitable[Response]]

    def __init__(
        self,
        origin: str,
        *,
        timeout: float,
        max_connections: int = 2,
        max_streams: int = 1000,
        http1_connections: int = 100,
        ca_file: str | None = None,
        proxy: Proxy | None = None,
        protocols: dict[str, str] | None = None,
        never_indexed: Sequence[bytes] = (),
    ) -> None:
        """`max_connections`, `max_streams`: HTTP/2 connections and streams on each;
        `http1_connections`: the HTTP/1.1 pool's bound (one request per connection at once).
        `protocols`: origin -> protocol, the answers of earlier probes (updated here).
        `never_indexed`: header names whose values are the request's own (`HTTP2Pool`)."""
        url = urlsplit(origin)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"origin must be http(s)://host[:port]: {origin}")
        self.http2 = HTTP2Pool(
            origin,
            timeout=timeout,
            max_connections=max_connections,
            max_streams=max_streams,
            ca_file=ca_file,
            alpn=(H2, HTTP1),
            proxy=proxy,
            http1_fallback=self._http1_fallback,
            never_indexed=never_indexed,
        )
        http1_ssl = None
        if url.scheme == "https":
            http1_ssl = ssl.create_default_context(cafile=ca_file)
            http1_ssl.set_alpn_protocols([HTTP1])
        self.http1 = HTTP1Pool(
            origin,
            timeout=timeout,
            max_connections=http1_connections,
            ssl_context=http1_ssl,
            proxy=proxy,
            on_connection_failure=self._http1_failed,
        )
        self.scheme = self.http2.scheme
        self.authority = self.http2.authority
        self.label = self.http2.label
        self.proxy = proxy
        self._forwarded = proxy is not None and url.scheme == "http"
        self._protocols = protocols if protocols is not None else {}
        self._http1_chosen = False
        if self._forwarded or self._protocols.get(self.label) == HTTP1:
            self._choose_http1(True, remember=False)
        else:
            self.request = self.http2.request

    @property
    def protocol(self) -> str | None:
        """`http/1.1`, `h2` (a connection is open), or None: not known yet."""
        if self._http1_chosen:
            return HTTP1
        return H2 if self.http2.has_connection else None

    async def probe(self) -> str:
        """The origin's protocol, opening a connection to learn it if need be."""
        if not self._http1_chosen:
            try:
                await self.http2.connect()
            except NotHTTP2Error:
                self._choose_http1(True)
            else:
                return H2
        return HTTP1

    async def request_many(
        self, items: Sequence[tuple[Headers, bytes]], timeout: float
    ) -> list[Outcome]:
        """HTTP2Pool.request_many on the protocol chosen: HTTP/2's in one go, HTTP/1.1's one
        request at a time, each within `timeout`."""
        if self._http1_chosen:
            return await each_with_timeout(self.http1.request, items, timeout)
        return await self.http2.request_many(items, timeout)

    def close(self) -> None:
        self.http2.close()
        self.http1.close()

    async def aclose(self) -> None:
        self.http2.close()
        await self.http1.aclose()

    def _choose_http1(self, chosen: bool, *, remember: bool = True) -> None:
        self._http1_chosen = chosen
        self.request = self.http1.request if chosen else self.http2.request
        if remember:
            if chosen:
                self._protocols[self.label] = HTTP1
            else:
                self._protocols.pop(self.label, None)

    async def _http1_fallback(self, headers: Headers, body: bytes) -> Response:
        """A request the HTTP/2 pool did not send: the server does not speak HTTP/2."""
        if not self._http1_chosen:
            self._choose_http1(True)
        return await self.http1.request(headers, body)

    def _http1_failed(self) -> None:
        if self._http1_chosen and not self._forwarded:
            self._choose_http1(False)  # the next request's HTTP/2 connection asks again
