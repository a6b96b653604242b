"""A minimal HTTP/1.1 server protocol: keep-alive, Content-Length bodies, one request at a time.

The fakes must stay cheap under benchmark load, so this is a few dozen lines on
`asyncio.BufferedProtocol` instead of a framework: the socket is read into a reused buffer,
headers are split out by one regular expression, and response heads are built once per
(status, headers) and cached. It serves loopback test traffic only: no chunked request bodies,
no pipelining beyond answering queued requests in order.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

# (status, extra headers, body) -- or an awaitable of it, for deliberately slow answers.
Response = tuple[int, Sequence[tuple[str, str]], bytes]
Handler = Callable[[str, str, dict[str, str], bytes], "Response | Awaitable[Response]"]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
_READ_SIZE = 16 * 1024

_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_HEADER_LINE = re.compile(r"([^:\r\n]+):[ \t]*([^\r\n]*)")
_heads: dict[tuple, bytes] = {}


def _head(status: int, headers: Sequence[tuple[str, str]], has_body: bool, close: bool) -> bytes:
    """The response head up to the Content-Length value, built once per distinct answer."""
    key = (status, tuple(headers), has_body, close)
    head = _heads.get(key)
    if head is None:
        lines = [f"HTTP/1.1 {status} {_PHRASES.get(status, 'Unknown')}"]
        if has_body:
            lines.append("Content-Type: application/json; charset=UTF-8")
        lines.extend(f"{name}: {value}" for name, value in headers)
        if close:
            lines.append("Connection: close")
        lines.append("Content-Length: ")
        head = "\r\n".join(lines).encode("latin-1")
        # Answers with unique headers (a Location per message) are not worth keeping.
        if len(_heads) < 1024 and not any(name.lower() == "location" for name, _ in headers):
            _heads[key] = head
    return head


class HTTP1Protocol(asyncio.BufferedProtocol):
    """Parses requests from a byte stream and writes the handler's responses."""

    def __init__(
        self, handler: Handler, *, with_query: bool = False, max_body: int = MAX_BODY_BYTES
    ) -> None:
        """`with_query`: hand the handler the request target with its query string;
        `max_body`: longer request bodies are answered 413."""
        self._handler = handler
        self._max_body = max_body
        self._with_query = with_query
        self._buffer = b""  # received, not yet handled
        self._busy = False
        self._transport: asyncio.Transport | None = None
        self._read = memoryview(bytearray(_READ_SIZE))

    def connection_made(self, transport) -> None:
        self._transport = transport

    def connection_lost(self, exc) -> None:
        self._transport = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data
        if not self._busy:
            self._process()

    def eof_received(self) -> bool:
        return False

    def _process(self) -> None:
        while self._transport is not None and not self._busy and self._buffer:
            buffer = self._buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    self._write(431, (), b"", close=True)
                return
            request_line, _, lines = buffer[:end].decode("latin-1").partition("\r\n")
            try:
                method, target, _ = request_line.split(" ", 2)
            except ValueError:
                self._write(400, (), b"", close=True)
                return
            headers = {
                name.strip().lower(): value.rstrip() for name, value in _HEADER_LINE.findall(lines)
            }
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self._write(400, (), b"", close=True)
                return
            if length > self._max_body:
                self._write(413, (), b"", close=True)
                return
            start = end + 4
            if len(buffer) < start + length:
                return
            body = buffer[start : start + length]
            self._buffer = buffer[start + length :]
            close = headers.get("connection", "").lower() == "close"
            path = target if self._with_query else target.partition("?")[0]
            answer = self._handler(method, path, headers, body)
            if isinstance(answer, tuple):
                self._write(*answer, close=close)
            else:
                self._busy = True
                task = asyncio.ensure_future(answer)
                task.add_done_callback(lambda done, close=close: self._finish(done, close))

    def _finish(self, task: asyncio.Future, close: bool) -> None:
        self._busy = False
        if task.cancelled() or task.exception() is not None:
            self._write(500, (), b"", close=True)
            return
        self._write(*task.result(), close=close)
        self._process()

    def _write(self, status: int, headers, body: bytes, *, close: bool = False) -> None:
        if self._transport is None:
            return
        head = _head(status, headers, bool(body), close)
        self._transport.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        if close:
            self._transport.close()
            self._transport = None
