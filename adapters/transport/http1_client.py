"""HTTP/1.1 to one origin on aiohttp: a bounded pool of keep-alive connections, for servers
that do not speak HTTP/2 (`adapters.transport.http_client` decides).

`HTTP1Pool.request(headers, body)` takes the HTTP/2-style header list the adapters build
(`:method`, `:path` and the regular fields; `:scheme` and `:authority` come from the origin)
and returns what `HTTP2Pool.request` returns: `(status, headers, body)` with lower-case byte
header names. The caller bounds the wait (asyncio.timeout), as for HTTP/2; aiohttp's own
timeouts are off but for the TCP connect. At most `max_connections` connections are open;
more requests wait for one to come free. A POST is never sent again by aiohttp (only
idempotent methods are): a request that fails raises `HTTP1ConnectionError` (an `OSError`)
and may have been processed.

Given a `Proxy`, `https://` origins are reached through a CONNECT tunnel (TLS inside it) and
`http://` origins through the proxy as a forward proxy (absolute-form requests), as every
HTTP/1.1 client does with `HTTP_PROXY`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from adapters.transport.http2_client import Headers, Response
from adapters.transport.proxy import Proxy, ProxyError


class HTTP1ConnectionError(ConnectionError):
    """The request did not get an answer: the connection failed or closed."""


class HTTP1Pool:
    """Keep-alive HTTP/1.1 connections to one origin (`http(s)://host[:port]`)."""

    def __init__(
        self,
        origin: str,
        *,
        timeout: float,
        max_connections: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
        on_connection_failure: Callable[[], None] | None = None,
    ) -> None:
        """`ssl_context`: for `https://` origins (default: the system's CAs, ALPN http/1.1).
        `on_connection_failure`: called when a request got no answer from the server."""
        url = urlsplit(origin)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"HTTP origin must be http(s)://host[:port]: {origin}")
        self.origin = origin.rstrip("/")
        port = url.port or (443 if url.scheme == "https" else 80)
        self.label = f"{url.scheme}://{url.hostname}:{port}"
        self.timeout = timeout
        self.max_connections = max_connections
        if url.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl = ssl_context if url.scheme == "https" else None
        self.proxy = proxy
        self._proxy_url = URL(proxy.url) if proxy is not None else None
        self._proxy_headers = None  # for the CONNECT of https:// origins
        self._forward_headers: dict[str, str] = {}  # in each request to a forward proxy
        if proxy is not None and proxy.authorization:
            if self._ssl is not None:
                self._proxy_headers = {"Proxy-Authorization": proxy.authorization}
            else:
                self._forward_headers = {"Proxy-Authorization": proxy.authorization}
        self._on_connection_failure = on_connection_failure
        self._session: aiohttp.ClientSession | None = None
        self._closing: set[asyncio.Task] = set()
        self._last: tuple[Headers, str, URL, dict[str, str]] | None = None

    async def request(self, headers: Headers, body: bytes) -> Response:
        session = self._session or self._open()
        method, url, fields = self._request_line(headers)
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=fields,
                proxy=self._proxy_url,
                proxy_headers=self._proxy_headers,
                # A 3xx is the answer, as over HTTP/2: a redirect must not carry a request
                # to a host the adapter did not choose.
                allow_redirects=False,
            ) as response:
                data = await response.read()
                return (
                    response.status,
                    {name.lower(): value for name, value in response.raw_headers},
                    data,
                )
        except aiohttp.ClientHttpProxyError as exc:
            raise ProxyError(
                f"proxy {self.proxy.url if self.proxy else '?'} refused CONNECT to "
                f"{self.label}: {exc.status} {exc.message}"
            ) from exc
        except aiohttp.ClientProxyConnectionError as exc:
            raise ProxyError(f"proxy {self.proxy.url if self.proxy else '?'}: {exc}") from exc
        except aiohttp.ClientError as exc:
            if self._on_connection_failure is not None:
                self._on_connection_failure()
            if isinstance(exc, TimeoutError):  # the TCP connect took longer than `timeout`
                raise
            raise HTTP1ConnectionError(f"{self.label}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Start closing the connections (`aclose` waits for it)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            task = asyncio.get_running_loop().create_task(session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        self.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=0,
            ssl=self._ssl if self._ssl is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # the proxy was chosen when this pool was built
        )
        return self._session

    def _request_line(self, headers: Headers) -> tuple[str, URL, dict[str, str]]:
        """Method, URL and header fields of an HTTP/2-style header list (the adapters reuse
        one list for a batch: converted once)."""
        last = self._last
        if last is not None and last[0] is headers:
            return last[1], last[2], last[3]
        method, path, fields = "GET", "/", dict(self._forward_headers)
        for name, value in headers:
            if name == b":method":
                method = value.decode("ascii")
            elif name == b":path":
                path = value.decode("ascii")
            elif not name.startswith(b":"):
                fields[name.decode("latin-1")] = value.decode("latin-1")
        url = URL(self.origin + path, encoded=True)
        self._last = (headers, method, url, fields)
        return method, url, fields
