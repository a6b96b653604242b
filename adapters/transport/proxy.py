"""Outbound HTTP proxies: which one the environment names for an origin, and CONNECT tunnels.

`proxy_for(origin)` reads the environment when it is called (each adapter calls it once per
client it builds, never at import time), with `urllib.request`'s semantics: `https_proxy` /
`HTTPS_PROXY` for `https://` origins, `http_proxy` / `HTTP_PROXY` for `http://` ones (the
lower-case spelling wins; the upper-case `HTTP_PROXY` is ignored under CGI, where a client's
`Proxy:` header would set it), and `no_proxy` / `NO_PROXY` to bypass it: `*`, host names and
IP addresses (each also matching as a `.suffix`: `example.com` and `.example.com` both cover
`api.example.com`), or `host:port`.

A proxy is an `http://[user:password@]host[:port]` URL (port 80 by default; a bare `host:port`
means the same); the user and password go as `Proxy-Authorization: Basic`. `open_tunnel()`
asks it to `CONNECT host:port` and returns the connected socket, so TLS (and ALPN) then runs
inside the tunnel, end to end with the origin. A proxy that answers anything but 2xx raises
`ProxyError` (an `OSError`, so a send fails with `network_error`) naming its status.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

_MAX_HEAD = 64 * 1024  # a proxy's answer to CONNECT is a few lines


class ProxyError(ConnectionError):
    """The proxy could not be reached, or refused the tunnel."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    username: str | None = None
    password: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        """The proxy's URL without its credentials (for messages and for aiohttp)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        """The proxy's URL with its user and password (for requests)."""
        if self.username is None:
            return self.url
        credentials = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return self.url.replace("http://", "http://" + credentials, 1)

    @property
    def authorization(self) -> str | None:
        """The Proxy-Authorization value (Basic), when the URL names a user."""
        if self.username is None:
            return None
        user_password = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(user_password).decode("ascii")

    @classmethod
    def from_url(cls, value: str) -> Proxy:
        """Parse `http://[user:password@]host[:port]`; ValueError when it is unusable."""
        text = value.strip()
        if "://" not in text:
            text = f"http://{text}"
        url = urlsplit(text)
        if url.scheme != "http":
            raise ValueError(f"only http:// proxies are supported, not {url.scheme}://")
        try:
            port = url.port or 80
        except ValueError as exc:
            raise ValueError(f"bad port in proxy URL {_without_credentials(url)}") from exc
        if not url.hostname:
            raise ValueError(f"no host in proxy URL {_without_credentials(url)}")
        if url.username is None:
            return cls(url.hostname, port)
        return cls(url.hostname, port, unquote(url.username), unquote(url.password or ""))


def _without_credentials(url) -> str:
    return f"{url.scheme}://{url.hostname or ''}" + (f":{url.port}" if url.port else "")


def proxy_for(origin: str) -> Proxy | None:
    """The proxy the environment names for `origin` (`scheme://host[:port]`), or None: no
    proxy for its scheme, or NO_PROXY covers it. ValueError when the proxy URL is unusable."""
    url = urlsplit(origin)
    proxies = urllib.request.getproxies_environment()
    value = proxies.get(url.scheme)
    if not value or not url.hostname:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    if urllib.request.proxy_bypass_environment(f"{url.hostname}:{port}", proxies):
        return None
    try:
        return Proxy.from_url(value)
    except ValueError as exc:
        raise ValueError(f"{url.scheme}_proxy is unusable: {exc}") from exc


async def open_tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A socket connected through `proxy` to `host:port` (CONNECT), ready for the origin's
    bytes: nothing of the origin's is read here. The caller bounds the time."""
    loop = asyncio.get_running_loop()
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock = await _connect(loop, proxy)
    try:
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if proxy.authorization:
            head += f"Proxy-Authorization: {proxy.authorization}\r\n"
        await loop.sock_sendall(sock, (head + "\r\n").encode("latin-1"))
        answer = await _read_head(loop, sock, proxy)
        status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProxyError(f"proxy {proxy.url} answered CONNECT with {status_line[:80]!r}")
        if not 200 <= int(parts[1]) < 300:
            raise ProxyError(f"proxy {proxy.url} refused CONNECT {target}: {' '.join(parts[1:])}")
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect(loop: asyncio.AbstractEventLoop, proxy: Proxy) -> socket.socket:
    try:
        infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProxyError(f"proxy {proxy.url}: cannot resolve {proxy.host} ({exc})") from exc
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise ProxyError(f"proxy {proxy.url} is unreachable ({error})")


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy) -> bytes:
    """The proxy's answer up to its blank line, and not one byte further: what follows is the
    origin's (an HTTP/2 server may speak first). Reads never cross a possible `\\r\\n\\r\\n`."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        if head.endswith(b"\r\n\r"):
            size = 1
        elif head.endswith(b"\r\n"):
            size = 2
        elif head.endswith(b"\r"):
            size = 3
        else:
            size = 4
        chunk = await loop.sock_recv(sock, size)
        if not chunk:
            raise ProxyError(f"proxy {proxy.url} closed the connection during CONNECT")
        head += chunk
        if len(head) > _MAX_HEAD:
            raise ProxyError(f"proxy {proxy.url} sent an over-long answer to CONNECT")
    return head
