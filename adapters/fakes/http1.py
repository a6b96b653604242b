"""A minimal HTTP/1.1 server protocol: keep-alive, Content-Length bodies, one request at a time.

The fakes must stay cheap under benchmark load, so this is a few dozen lines on
`asyncio.Protocol` instead of a framework. It serves loopback test traffic only: no chunked
request bodies, no pipelining beyond answering queued requests in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus

# (status, extra headers, body) -- or an awaitable of it, for deliberately slow answers.
Response = tuple[int, list[tuple[str, str]], bytes]
Handler = Callable[[str, str, dict[str, str], bytes], "Response | Awaitable[Response]"]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


class HTTP1Protocol(asyncio.Protocol):
    """Parses requests from a byte stream and writes the handler's responses."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._buffer = bytearray()
        self._busy = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def connection_lost(self, exc) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._process()

    def _process(self) -> None:
        while self._transport is not None and not self._busy:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self._write(431, [], b"", close=True)
                return
            head = self._buffer[:end].decode("latin-1").split("\r\n")
            try:
                method, target, _ = head[0].split(" ", 2)
            except ValueError:
                self._write(400, [], b"", close=True)
                return
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self._write(413, [], b"", close=True)
                return
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            close = headers.get("connection", "").lower() == "close"
            answer = self._handler(method, target.partition("?")[0], headers, body)
            if isinstance(answer, tuple):
                self._write(*answer, close=close)
            else:
                self._busy = True
                task = asyncio.ensure_future(answer)
                task.add_done_callback(lambda done, close=close: self._finish(done, close))

    def _finish(self, task: asyncio.Future, close: bool) -> None:
        self._busy = False
        if task.cancelled() or task.exception() is not None:
            self._write(500, [], b"", close=True)
            return
        self._write(*task.result(), close=close)
        self._process()

    def _write(self, status: int, headers, body: bytes, *, close: bool = False) -> None:
        if self._transport is None:
            return
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Length: {len(body)}"]
        if body:
            lines.append("Content-Type: application/json; charset=UTF-8")
        lines.extend(f"{name}: {value}" for name, value in headers)
        if close:
            lines.append("Connection: close")
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self._transport.close()
            self._transport = None
