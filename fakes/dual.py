"""One port for both protocols: a connection that opens with the HTTP/2 client preface is
served by `http2.py` (cleartext with prior knowledge, as the adapters connect), any other by
`http1.py` (urllib, the admin helpers, HTTP/1.1-only clients). Both hand every request to the
same handler, so statuses, bodies and headers are the same; only the framing differs.
"""

from __future__ import annotations

import asyncio
import functools

from fakes.http1 import MAX_BODY_BYTES, Handler, HTTP1Protocol, Response
from fakes.http2 import PREFACE, HTTP2ServerProtocol, encode_literal, encode_status
from fakes.stats import PEER, peer_of


class DualProtocolConnection(HTTP2ServerProtocol):
    """One client connection: HTTP/2 if it opens with the client preface, else HTTP/1.1;
    either way every request goes to `handler` (as `HTTP1Protocol` calls it)."""

    max_body = MAX_BODY_BYTES  # a longer body is answered 413, as over HTTP/1.1

    def __init__(self, handler: Handler, *, with_query: bool = False) -> None:
        """`with_query`: hand the handler the request target with its query string."""
        super().__init__()
        self._handler = handler
        self._with_query = with_query
        self._http1: HTTP1Protocol | None = None
        self._detecting = True  # no byte seen yet that tells the protocols apart
        self._peer = ""

    def connection_made(self, transport) -> None:
        # No SETTINGS yet: an HTTP/1.1 client must not receive HTTP/2 frames.
        self.transport = transport
        self._peer = peer_of(transport)

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if self._http1 is not None:
            self._http1.connection_lost(exc)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._http1 is not None:
            return self._http1.get_buffer(sizehint)
        return super().get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self._http1 is not None:
            self._http1.buffer_updated(nbytes)
            return
        if self._detecting:
            seen = self._buffered + nbytes
            received = bytes(self._view[:seen])
            if PREFACE.startswith(received):  # all preface so far
                if seen < len(PREFACE):
                    self._buffered = seen
                    return
            elif not received.startswith(PREFACE):
                self._http1 = HTTP1Protocol(self._handler, with_query=self._with_query)
                self._http1.connection_made(self.transport)
                self._http1.data_received(received)
                return
            self._detecting = False
            transport, self._buffered = self.transport, 0
            super().connection_made(transport)  # our SETTINGS and connection window
            self._view[:seen] = received
            nbytes = seen
        super().buffer_updated(nbytes)

    def request_received(self, stream_id: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if len(body) > self.max_body:
            self._answer(stream_id, (413, (), b""))
            return
        method = headers.get(b":method", b"").decode("latin-1")
        path = headers.get(b":path", b"").decode("latin-1")
        if not self._with_query:
            path = path.partition("?")[0]
        fields = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers.items()
            if name[:1] != b":"
        }
        PEER.set(self._peer)  # for a handler that tracks who sent what (fakes.stats)
        answer = self._handler(method, path, fields, body)
        if isinstance(answer, tuple):
            self._answer(stream_id, answer)
        else:
            task = asyncio.ensure_future(answer)
            task.add_done_callback(lambda done: self._answer_later(stream_id, done))

    def _answer(self, stream_id: int, response: Response) -> bool:
        status, extra, body = response
        extra = tuple(extra)
        if any(name.lower() == "location" for name, _ in extra):  # one per message: not kept
            block = _header_block.__wrapped__(status, extra, bool(body))
        else:
            block = _header_block(status, extra, bool(body))
        return self.send_response(stream_id, block, body)

    def _answer_later(self, stream_id: int, task: asyncio.Future) -> None:
        if task.cancelled() or task.exception() is not None:
            response: Response = (500, (), b"")
        else:
            response = task.result()
        # False when the client reset the stream (gave up) or the connection closed meanwhile.
        if self._answer(stream_id, response):
            self.flush()


@functools.lru_cache(maxsize=1024)
def _header_block(status: int, extra: tuple[tuple[str, str], ...], has_body: bool) -> bytes:
    """The response's HPACK block, as the HTTP/1.1 head has it (built once per answer)."""
    block = encode_status(status)
    if has_body:
        block += encode_literal(b"content-type", b"application/json; charset=UTF-8")
    for name, value in extra:
        block += encode_literal(name.lower().encode("latin-1"), value.encode("latin-1"))
    return block
