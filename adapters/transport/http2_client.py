"""A small asyncio HTTP/2 client, framed here (RFC 9113) with hpack for the header blocks: a
few long-lived connections to one origin, many concurrent streams each, for request/response
APIs with small bodies (APNs, FCM HTTP v1).

Why not a library: the send path's CPU, measured (`bench/adapter_push.py`, `bench/RESULTS.md`).
Through aioapns an APNs send cost 274-293 us of client CPU; on h2's state machine, with every
shortcut below, 122 us (APNs and FCM alike), half of it in h2's frame objects and checks;
framed here, 52-60 us. The savings: frames are built as bytes and parsed with one
`struct` unpack each, without an object per frame or a state machine per stream; a request's
own header values (the APNs device-token `:path`, `apns-id`) go out as never-indexed HPACK
literals instead of being searched for and added to the dynamic table; every other field's
encoding is kept while the table stands; no Huffman coding; what a loop pass produced leaves
in one `transport.write` (scheduled with `loop.call_soon`). `tests/adapters/
test_http2_framing.py` holds the framing to h2's server-side state machine as the peer.

The encoder takes internals of hpack 4.2.0, pinned in requirements.txt, which may change them
in any release; `tests/adapters/test_hpack_internals.py` checks each one, and this module must
be reviewed before hpack is upgraded:

* hpack `Encoder.__init__` sets `header_table` (a `hpack.table.HeaderTable`), which
  `_PlainEncoder` replaces with a `_CountingTable`.
* hpack `Encoder.add(to_add, sensitive, huffman=False) -> bytes` encodes one field and
  changes the dynamic table only through `self.header_table.add(name, value)`;
  `Encoder.encode(headers, huffman=True)`; the private `Encoder._encode_table_size_change()`
  (the pending size updates in `Encoder.table_size_changes`); `Encoder.header_table_size`,
  which a peer's SETTINGS_HEADER_TABLE_SIZE sets.
* hpack `HeaderTable.add(name, value)` (overridden, to count insertions) and
  `HeaderTable.resized`, set when `maxsize` changes, cleared by the encoder that emits the
  size update; `dynamic_entries` changes only through `add` and a resize.
* `hpack.hpack.encode_integer(integer, prefix_bits) -> bytearray` (not exported by hpack).

`HTTP2Pool.request(headers, body)` sends one request (HEADERS, then DATA with END_STREAM) and
returns `(status, headers, body)`. Per connection, at most the server's
SETTINGS_MAX_CONCURRENT_STREAMS (and our own cap) streams are open; more requests wait in a
queue and start as streams end. A pool opens another connection only when every connection
is full, up to `max_connections`.

`https://` origins use TLS with ALPN (`h2` by default: a server that picks anything else is
refused with a clear error); `http://` origins use HTTP/2 over cleartext with prior knowledge
(h2c: the connection preface right away, no Upgrade). Given a `Proxy`, each connection is a
CONNECT tunnel through it (`adapters.transport.proxy`), with TLS inside the tunnel. No request is
written to a connection before the server's SETTINGS frame: a server that turns out not to
speak HTTP/2 (ALPN chose another protocol; over cleartext, an HTTP/1 answer to the preface, or
the connection closed before SETTINGS) raises `NotHTTP2Error` having seen no request, so with
`http1_fallback` (`adapters.transport.http_client`) those requests go there instead, each once.
Connection failures, a connection lost with streams open, protocol errors and streams reset
by the server raise `HTTP2ConnectionError` (an `OSError`), and the request is not sent again:
the server may have processed it. After a GOAWAY, requests the server did not process
(queued ones, and streams above its last stream id) are sent again on another connection, once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from hpack import Decoder, Encoder
from hpack.exceptions import HPACKError
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

from adapters.transport.proxy import Proxy, open_tunnel

Headers = Sequence[tuple[bytes, bytes]]
Response = tuple[int, dict[bytes, bytes], bytes]
# What request_many gives each request: the response and its latency in ms, or the exception.
Outcome = tuple[Response, float] | BaseException

_RECEIVE_WINDOW = 2**24  # connection window we open upfront: many small answers in flight
_MAX_RESENDS = 1


class HTTP2ConnectionError(ConnectionError):
    """The request did not get an answer: the connection failed, closed or reset the stream."""


class NotHTTP2Error(HTTP2ConnectionError):
    """The server does not speak HTTP/2; it was sent no request."""


class _CountingTable(HeaderTable):
    """HPACK's dynamic table, counting insertions (to know when an encoding changed it)."""

    additions = 0

    def add(self, name, value):
        self.additions += 1
        return super().add(name, value)


class _PlainEncoder(Encoder):
    """HPACK without Huffman coding (cheaper in pure Python than the bytes it saves), with
    two shortcuts hpack does not take:

    * Values in `never_indexed` (a request's own: an APNs device-token path, an apns-id) are
      sent as literals that never enter the dynamic table (RFC 7541 6.2.3): indexing them
      would only evict useful entries, and hpack would search its tables for them first.
    * Every other field, once the table holds it, encodes to the same bytes until the table
      changes: those bytes are kept (per field, and the last whole block), where hpack would
      search its tables each time. A request's other headers are the same for a batch."""

    def __init__(self, never_indexed: frozenset[bytes] = frozenset()) -> None:
        super().__init__()
        self.header_table = _CountingTable()
        self.never_indexed = never_indexed
        self._last: tuple | None = None
        self._last_block = b""
        self._fields: dict[tuple[bytes, bytes], bytes] = {}  # valid for _fields_at additions
        self._fields_at = 0

    def encode(self, headers, huffman: bool = False) -> bytes:
        headers = tuple(headers)
        table = self.header_table
        if headers == self._last and not table.resized:
            return self._last_block
        additions = table.additions
        if self.never_indexed:
            block = self._encode_fields(headers)
        else:
            block = super().encode(headers, huffman=False)
        # Reusable only if encoding added nothing to the table (all fields were indexed).
        self._last = headers if table.additions == additions else None
        self._last_block = block
        return block

    def _encode_fields(self, headers: tuple) -> bytes:
        table = self.header_table
        pieces = []
        if table.resized:  # the new size may have evicted entries: indexes shift
            pieces.append(self._encode_table_size_change())
            table.resized = False
            self._fields_at = -1
        if self._fields_at != table.additions:
            self._fields.clear()
            self._fields_at = table.additions
        fields = self._fields
        never_indexed = self.never_indexed
        for field in headers:
            name, value = field
            if name in never_indexed:
                pieces.append(_never_indexed_literal(name, value))
                continue
            piece = fields.get(field)
            if piece is None:
                piece = self.add(field, False, False)
                if table.additions == self._fields_at:
                    fields[field] = piece  # an index: the same bytes while the table stands
                else:
                    fields.clear()
                    self._fields_at = table.additions
            pieces.append(piece)
        return b"".join(pieces)


def _never_indexed_literal(name: bytes, value: bytes) -> bytes:
    """`Literal Header Field Never Indexed -- New Name`, without Huffman coding."""
    return b"".join(
        (b"\x10", encode_integer(len(name), 7), name, encode_integer(len(value), 7), value)
    )


class _Request:
    __slots__ = (
        "headers",
        "body",
        "future",
        "stream_id",
        "response",
        "data",
        "sent",
        "connection",
        "started",
        "finished",
    )

    def __init__(self, headers: Headers, body: bytes, future: asyncio.Future) -> None:
        self.headers = headers
        self.body = body
        self.future = future
        self.stream_id = 0
        self.response: dict[bytes, bytes] | None = None
        self.data: list[bytes] = []
        self.sent = 0  # times handed to a connection
        self.connection: _Connection | None = None
        self.started = 0.0  # loop time its stream opened
        self.finished = 0.0  # loop time its answer was complete


# HTTP/2 frame types and flags (RFC 9113 6).
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PUSH_PROMISE = 0x0, 0x1, 0x3, 0x4, 0x5
_PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x6, 0x7, 0x8, 0x9
_END_STREAM = _ACK = 0x1
_END_HEADERS, _PADDED, _PRIORITY = 0x4, 0x8, 0x20
# SETTINGS identifiers (RFC 9113 6.5.2).
_HEADER_TABLE_SIZE, _ENABLE_PUSH, _MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
_INITIAL_WINDOW_SIZE, _MAX_FRAME_SIZE = 0x4, 0x5
# Error codes (RFC 9113 7).
_NO_ERROR, _PROTOCOL_ERROR, _FLOW_CONTROL_ERROR, _CANCEL = 0x0, 0x1, 0x3, 0x8
_REFUSED_STREAM = 0x7

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DEFAULT_WINDOW = 65_535
_OUR_MAX_FRAME = 16_384  # SETTINGS_MAX_FRAME_SIZE we leave at its default
_MAX_WINDOW = 2**31 - 1
_LAST_STREAM_ID = 2**31 - 1
_FRAME_HEADER = struct.Struct(">I B I")  # length << 8 | type, flags, stream id
_SETTING = struct.Struct(">HI")
_U32 = struct.Struct(">I")
_GOAWAY_BODY = struct.Struct(">II")


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _FRAME_HEADER.pack(len(payload) << 8 | kind, flags, stream_id) + payload


class _ProtocolError(Exception):
    """The server broke HTTP/2: the connection ends."""


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection, client side, framed here (RFC 9113): what a request/response
    API needs and nothing more (no server push, no priorities, no trailers kept).

    Why not h2's state machine: its per-frame objects and checks cost as much CPU as the
    rest of a push send together (`bench/adapter_push.py`, `bench/RESULTS.md`). What is
    kept of the protocol: the preface and SETTINGS both ways (a peer's HEADER_TABLE_SIZE,
    MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE are honoured), flow control
    both ways, CONTINUATION, padding, PING answered, RST_STREAM and GOAWAY, header blocks
    decoded by hpack's decoder for every stream (its table must follow the server's even for
    a stream we reset), frames of unknown types ignored (RFC 9113 5.5)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        label: str,
        max_streams: int,
        resend: Callable[[list[_Request]], None],
        lost: Callable[[_Connection], None],
        never_indexed: frozenset[bytes] = frozenset(),
        cleartext: bool = False,
    ) -> None:
        self.loop = loop
        self.label = label
        # Over TLS, ALPN said h2; over cleartext, only the server's SETTINGS will say it.
        self._not_http2 = NotHTTP2Error if cleartext else HTTP2ConnectionError
        self.ready: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.usable = False  # new streams may start here
        self.encoder = _PlainEncoder(never_indexed)
        self.decoder = Decoder()
        self.streams: dict[int, _Request] = {}
        self.queue: collections.deque[_Request] = collections.deque()
        self._max_streams = max_streams  # our cap; the server's may be lower
        self._next_stream_id = 1
        # The server's settings (RFC 9113 6.5.2 initial values until its SETTINGS arrive).
        self._peer_max_streams = 100
        self._peer_initial_window = _DEFAULT_WINDOW
        self._peer_max_frame = 16_384
        # Flow control: what we may still send, on the connection and per open stream.
        self._send_window = _DEFAULT_WINDOW
        self._stream_windows: dict[int, int] = {}
        # What the server sent and we have not yet given back with WINDOW_UPDATE.
        self._received = 0
        self._inbound = bytearray()
        self._headers_of: tuple[int, int, list[bytes]] | None = None  # (stream, flags, parts)
        self._out: list[bytes] = []
        self._blocked: dict[int, bytes] = {}  # request body waiting for flow-control window
        self._flush_scheduled = False
        self._resend = resend
        self._lost = lost
        self._last_received = 0.0  # loop time of the last bytes from the server

    # -- pool interface --

    @property
    def capacity(self) -> int:
        """Streams that could start now (negative: requests queued beyond the limit)."""
        limit = min(self._max_streams, self._peer_max_streams)
        return limit - len(self.streams) - len(self.queue)

    def submit(self, request: _Request) -> None:
        if request.future.done():  # its sender gave up before it was handed over again
            return
        request.sent += 1
        request.connection = self
        if self.capacity > 0:
            self._start(request)
            self._schedule_flush()
        else:
            self.queue.append(request)

    def cancel(self, request: _Request) -> None:
        """The sender gave up (timeout): reset the stream, or drop the queued request.

        If the server sent nothing at all since that stream opened, the connection is taken
        for dead (a peer gone without a FIN would otherwise time out every later batch)."""
        if request.stream_id and self.streams.get(request.stream_id) is request:
            if self._last_received < request.started:
                self._abort(HTTP2ConnectionError(f"{self.label}: server stopped answering"))
                return
            self._end_stream(request.stream_id)
            if self.transport is not None:
                self._out.append(_frame(_RST_STREAM, 0, request.stream_id, _U32.pack(_CANCEL)))
                self._schedule_flush()
            self._start_queued()
        else:
            with contextlib.suppress(ValueError):
                self.queue.remove(request)

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            # The last stream id a GOAWAY names is the peer's (RFC 9113 6.8): a client that
            # refuses server push has processed none.
            self._out.append(_frame(_GOAWAY, 0, 0, _GOAWAY_BODY.pack(0, _NO_ERROR)))
            self._flush()
            self.transport.close()

    # -- asyncio --

    def connection_made(self, transport) -> None:
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            return  # not a word of HTTP/2 to it: the pool closes this connection
        transport.write(
            _PREFACE
            + _frame(_SETTINGS, 0, 0, _SETTING.pack(_ENABLE_PUSH, 0))
            + _frame(_WINDOW_UPDATE, 0, 0, _U32.pack(_RECEIVE_WINDOW))
        )

    def data_received(self, data: bytes) -> None:
        if not self.ready.done() and not self._inbound and data[:5] == b"HTTP/":
            # An HTTP/1 server answering the preface; read as a frame it is megabytes long.
            self._abort(self._not_http2(f"{self.label}: not an HTTP/2 server (HTTP/1 answer)"))
            return
        self._last_received = self.loop.time()
        inbound = self._inbound
        inbound += data
        offset, end = 0, len(inbound)
        try:
            while end - offset >= 9:
                head, flags, stream_id = _FRAME_HEADER.unpack_from(inbound, offset)
                size, kind = head >> 8, head & 0xFF
                if size > _OUR_MAX_FRAME:
                    raise _ProtocolError(f"a frame of {size} octets, above {_OUR_MAX_FRAME}")
                if end - offset - 9 < size:
                    break
                payload = bytes(inbound[offset + 9 : offset + 9 + size])
                offset += 9 + size
                self._frame_received(kind, flags, stream_id & _LAST_STREAM_ID, payload)
                if self.transport is None:
                    return
        except (_ProtocolError, HPACKError, ValueError, struct.error) as exc:
            if self.ready.done():
                self._abort(HTTP2ConnectionError(f"{self.label}: protocol error ({exc})"))
            else:
                self._abort(self._not_http2(f"{self.label}: not an HTTP/2 server? ({exc})"))
            return
        del inbound[:offset]
        if self._received >= _RECEIVE_WINDOW // 2:
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(self._received)))
            self._received = 0
        self._schedule_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.usable = False
        error = HTTP2ConnectionError(
            f"{self.label}: connection lost" + (f" ({exc})" if exc else "")
        )
        if not self.ready.done():
            self.ready.set_exception(
                self._not_http2(
                    f"{self.label}: connection closed before the server's HTTP/2 SETTINGS "
                    "(not an HTTP/2 server?)"
                )
            )
        streams, self.streams = self.streams, {}
        queued, self.queue = list(self.queue), collections.deque()
        for request in [*streams.values(), *queued]:
            if not request.future.done():
                request.future.set_exception(error)
        self._lost(self)

    # -- frames received --

    def _frame_received(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._headers_of is not None and kind != _CONTINUATION:
            raise _ProtocolError("a header block was interrupted")
        if not self.ready.done() and kind != _SETTINGS:
            raise _ProtocolError(f"the server's first frame is of type {kind}, not SETTINGS")
        if kind == _HEADERS:
            if not stream_id:
                raise _ProtocolError("HEADERS on stream 0")
            block = _unpadded(flags, payload)
            if flags & _PRIORITY:
                block = block[5:]
            if flags & _END_HEADERS:
                self._headers_received(stream_id, flags, block)
            else:
                self._headers_of = (stream_id, flags, [block])
        elif kind == _CONTINUATION:
            if self._headers_of is None or self._headers_of[0] != stream_id:
                raise _ProtocolError("CONTINUATION without its HEADERS")
            self._headers_of[2].append(payload)
            if flags & _END_HEADERS:
                stream_id, first_flags, parts = self._headers_of
                self._headers_of = None
                self._headers_received(stream_id, first_flags, b"".join(parts))
        elif kind == _DATA:
            if not stream_id:
                raise _ProtocolError("DATA on stream 0")
            self._received += len(payload)  # padding included (RFC 9113 6.1)
            request = self.streams.get(stream_id)
            if request is not None:
                data = _unpadded(flags, payload)
                if data:
                    request.data.append(data)
                if flags & _END_STREAM:
                    self._complete(stream_id)
                elif len(payload) and sum(map(len, request.data)) >= _DEFAULT_WINDOW // 2:
                    # A long answer: give its stream window back as it arrives.
                    self._out.append(_frame(_WINDOW_UPDATE, 0, stream_id, _U32.pack(len(payload))))
        elif kind == _SETTINGS:
            if flags & _ACK or stream_id:
                if stream_id:
                    raise _ProtocolError("SETTINGS on a stream")
                return
            self._settings_received(payload)
        elif kind == _WINDOW_UPDATE:
            (increment,) = _U32.unpack(payload)
            increment &= _MAX_WINDOW
            if not stream_id:
                self._send_window += increment
                if self._send_window > _MAX_WINDOW:
                    raise _ProtocolError("the connection's send window overflowed")
            elif stream_id in self._stream_windows:
                self._stream_windows[stream_id] += increment
            if self._blocked:
                self._send_blocked()
        elif kind == _RST_STREAM:
            (error_code,) = _U32.unpack(payload)
            self._reset_by_server(stream_id, error_code)
        elif kind == _PING:
            if not flags & _ACK:
                self._out.append(_frame(_PING, _ACK, 0, payload))
        elif kind == _GOAWAY:
            last_stream_id, error_code = _GOAWAY_BODY.unpack_from(payload)
            self._goaway(last_stream_id & _LAST_STREAM_ID, error_code)
        elif kind == _PUSH_PROMISE:
            raise _ProtocolError("PUSH_PROMISE, though push is disabled")
        # PRIORITY, and types this client does not know: ignored (RFC 9113 5.5).

    def _headers_received(self, stream_id: int, flags: int, block: bytes) -> None:
        # Decoded even for a stream we no longer track: the decoder's table follows the server.
        headers = self.decoder.decode(block, raw=True)
        request = self.streams.get(stream_id)
        if request is None:
            return
        if request.response is None:
            fields = dict(headers)
            if not fields.get(b":status", b"").startswith(b"1"):  # not a 1xx interim answer
                request.response = fields
        if flags & _END_STREAM:
            self._complete(stream_id)

    def _settings_received(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise _ProtocolError("SETTINGS of a length that is not a multiple of 6")
        for offset in range(0, len(payload), 6):
            identifier, value = _SETTING.unpack_from(payload, offset)
            if identifier == _HEADER_TABLE_SIZE:
                self.encoder.header_table_size = value
            elif identifier == _MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
            elif identifier == _INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise _ProtocolError("INITIAL_WINDOW_SIZE above 2^31-1")
                delta, self._peer_initial_window = value - self._peer_initial_window, value
                for open_stream in self._stream_windows:
                    self._stream_windows[open_stream] += delta
            elif identifier == _MAX_FRAME_SIZE:
                if not 16_384 <= value <= 16_777_215:
                    raise _ProtocolError(f"MAX_FRAME_SIZE {value}")
                self._peer_max_frame = value
        self._out.append(_frame(_SETTINGS, _ACK, 0))
        if not self.ready.done():
            self.usable = True
            self.ready.set_result(None)
        if self._blocked:  # the initial window may have grown
            self._send_blocked()
        self._start_queued()

    # -- internals --

    def _start(self, request: _Request) -> None:
        stream_id = self._next_stream_id
        if stream_id > _LAST_STREAM_ID:  # stream ids used up: new streams go elsewhere
            self.usable = False
            self._resend([request])
            return
        self._next_stream_id += 2
        block = self.encoder.encode(request.headers)
        body = request.body
        size = len(body)
        out = self._out
        max_frame = self._peer_max_frame
        end = _END_STREAM if not size else 0
        if len(block) <= max_frame:
            out.append(_frame(_HEADERS, _END_HEADERS | end, stream_id, block))
        else:
            out.append(_frame(_HEADERS, end, stream_id, block[:max_frame]))
            for start in range(max_frame, len(block), max_frame):
                last = start + max_frame >= len(block)
                piece = block[start : start + max_frame]
                out.append(_frame(_CONTINUATION, _END_HEADERS if last else 0, stream_id, piece))
        request.stream_id = stream_id
        request.started = self.loop.time()
        self.streams[stream_id] = request
        window = self._peer_initial_window
        if size and size <= max_frame and size <= window and size <= self._send_window:
            self._send_window -= size
            self._stream_windows[stream_id] = window - size
            out.append(_frame(_DATA, _END_STREAM, stream_id, body))
        else:
            self._stream_windows[stream_id] = window
            if size:
                self._blocked[stream_id] = body
                self._send_blocked()

    def _start_queued(self) -> None:
        queue = self.queue
        while queue and self.usable and self.capacity + len(queue) > 0:
            request = queue.popleft()
            if not request.future.done():
                self._start(request)
        self._schedule_flush()
        if not self.usable and not self.streams and self.ready.done():
            # After a GOAWAY: the last answer is in, close.
            self._flush()
            if self.transport is not None:
                self.transport.close()

    def _send_blocked(self) -> None:
        for stream_id in list(self._blocked):
            body = self._blocked[stream_id]
            while body:
                size = min(
                    len(body),
                    self._stream_windows.get(stream_id, 0),
                    self._send_window,
                    self._peer_max_frame,
                )
                if size <= 0:
                    break
                chunk, body = body[:size], body[size:]
                self._send_window -= size
                self._stream_windows[stream_id] -= size
                self._out.append(_frame(_DATA, 0 if body else _END_STREAM, stream_id, chunk))
            if body:
                self._blocked[stream_id] = body
            else:
                del self._blocked[stream_id]
        self._schedule_flush()

    def _end_stream(self, stream_id: int) -> _Request | None:
        request = self.streams.pop(stream_id, None)
        if request is not None:
            self._stream_windows.pop(stream_id, None)
            self._blocked.pop(stream_id, None)
        return request

    def _complete(self, stream_id: int) -> None:
        if stream_id in self._blocked:  # answered before its body was sent: stop sending it
            self._out.append(_frame(_RST_STREAM, 0, stream_id, _U32.pack(_NO_ERROR)))
        request = self._end_stream(stream_id)
        if request is not None and not request.future.done():
            request.finished = self.loop.time()
            headers = request.response or {}
            try:
                status = int(headers.get(b":status", b"0"))
            except ValueError:
                status = 0
            request.future.set_result((status, headers, b"".join(request.data)))
        self._start_queued()

    def _reset_by_server(self, stream_id: int, error_code: int) -> None:
        request = self._end_stream(stream_id)
        if request is not None and not request.future.done():
            if error_code == _REFUSED_STREAM and request.sent <= _MAX_RESENDS:
                request.stream_id, request.response, request.data = 0, None, []
                self._resend([request])  # refused: not processed, safe to send again
            else:
                request.future.set_exception(
                    HTTP2ConnectionError(f"{self.label}: stream reset by the server ({error_code})")
                )
        self._start_queued()

    def _goaway(self, last_stream_id: int, error_code: int) -> None:
        self.usable = False
        unprocessed = [self.queue.popleft() for _ in range(len(self.queue))]
        for stream_id in [s for s in self.streams if s > last_stream_id]:
            request = self._end_stream(stream_id)
            request.stream_id, request.response, request.data = 0, None, []
            unprocessed.append(request)
        retry = [r for r in unprocessed if r.sent <= _MAX_RESENDS and not r.future.done()]
        error = HTTP2ConnectionError(f"{self.label}: server closed the connection ({error_code})")
        for request in unprocessed:
            if request not in retry and not request.future.done():
                request.future.set_exception(error)
        if retry:
            self._resend(retry)
        if not self.streams and self.transport is not None:
            self._flush()
            self.transport.close()

    def _abort(self, error: Exception) -> None:
        self.usable = False
        if not self.ready.done():
            self.ready.set_exception(error)
        for request in [*self.streams.values(), *self.queue]:
            if not request.future.done():
                request.future.set_exception(error)
        self.streams.clear()
        self.queue.clear()
        if self.transport is not None:
            self.transport.abort()

    def _schedule_flush(self) -> None:
        if self._out and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))


def _unpadded(flags: int, payload: bytes) -> bytes:
    if not flags & _PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _ProtocolError("padding longer than its frame")
    return payload[1 : len(payload) - payload[0]]


class HTTP2Pool:
    """Connections to one origin (`https://host[:port]` or `http://host[:port]`)."""

    def __init__(
        self,
        origin: str,
        *,
        timeout: float,
        max_connections: int = 2,
        max_streams: int = 1000,
        ca_file: str | None = None,
        client_certificate: str | None = None,
        never_indexed: Sequence[bytes] = (),
        alpn: Sequence[str] = ("h2",),
        proxy: Proxy | None = None,
        http1_fallback: Callable[[Headers, bytes], Awaitable[Response]] | None = None,
    ) -> None:
        """`client_certificate`: a PEM file with a certificate and its key, for TLS client
        authentication (loaded here; the file may go once the pool exists).
        `never_indexed`: header names whose values are the request's own (HPACK literals that
        never enter the dynamic table).
        `alpn`: the protocols offered over TLS (only `h2` is spoken here).
        `proxy`: tunnel each connection through it (HTTP CONNECT).
        `http1_fallback`: where a request goes when the server turns out not to speak HTTP/2
        (without it, such a request fails with `NotHTTP2Error`)."""
        url = urlsplit(origin)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"HTTP/2 origin must be http(s)://host[:port]: {origin}")
        self.scheme = url.scheme.encode()
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        default_port = 443 if url.scheme == "https" else 80
        self.authority = (
            self.host if self.port == default_port else f"{self.host}:{self.port}"
        ).encode()
        self.label = f"{url.scheme}://{self.host}:{self.port}"
        self.timeout = timeout
        self.max_connections = max_connections
        self.max_streams = max_streams
        self.never_indexed = frozenset(never_indexed)
        self.proxy = proxy
        self._http1_fallback = http1_fallback
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=ca_file)
            self._ssl.set_alpn_protocols(list(alpn))
            if client_certificate:
                self._ssl.load_cert_chain(client_certificate)
        elif client_certificate:
            raise ValueError(f"a client certificate needs an https:// origin: {origin}")
        self._connections: list[_Connection] = []
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closed = False

    async def request(self, headers: Headers, body: bytes) -> Response:
        """Send one request; the caller bounds the wait (asyncio.timeout)."""
        request = _Request(headers, body, asyncio.get_running_loop().create_future())
        try:
            await self._dispatch(request)
            return await request.future
        except asyncio.CancelledError:
            if request.connection is not None:  # the latest, after any resend
                request.connection.cancel(request)
            raise
        except NotHTTP2Error:
            # Raised only by a connection that had not been sent this request.
            if self._http1_fallback is None:
                raise
            return await self._http1_fallback(headers, body)

    async def request_many(
        self, items: Sequence[tuple[Headers, bytes]], timeout: float
    ) -> list[Outcome]:
        """Sends requests together, each answered within `timeout` seconds of this call; one
        outcome per request, in order: `(response, latency_ms)`, or the exception it got
        (`TimeoutError` for no answer in time). What `request` under `asyncio.timeout` gives
        each request, without a task, a coroutine and a timer of its own (a third of a
        push send's event-loop CPU went to those)."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        started = loop.time()
        requests = [_Request(headers, body, loop.create_future()) for headers, body in items]
        try:
            async with asyncio.timeout(timeout):
                for index, request in enumerate(requests):
                    connection = self._pick()
                    if connection is None:
                        try:
                            connection = await self._connect()
                        except (OSError, NotHTTP2Error) as exc:
                            for unsent in requests[index:]:
                                unsent.future.set_exception(exc)
                            break
                    connection.submit(request)
                await asyncio.wait([request.future for request in requests])
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            self._give_up(requests)
            raise
        outcomes: list[Outcome] = []
        fallback: list[int] = []
        for index, request in enumerate(requests):
            future = request.future
            if not future.done():
                outcomes.append(TimeoutError(f"no answer within {timeout} s"))
            elif future.cancelled():
                outcomes.append(HTTP2ConnectionError(f"{self.label}: request cancelled"))
            elif (error := future.exception()) is not None:
                if isinstance(error, NotHTTP2Error) and self._http1_fallback is not None:
                    fallback.append(index)
                outcomes.append(error)
            else:
                outcomes.append((future.result(), (request.finished - started) * 1000))
        self._give_up(requests)
        if fallback:
            # Not sent at all: the server does not speak HTTP/2 (the pool's first connection).
            remaining = max(timeout - (loop.time() - started), 0.0)
            retried = await each_with_timeout(
                self._http1_fallback, [items[i] for i in fallback], remaining
            )
            for index, outcome in zip(fallback, retried, strict=True):
                outcomes[index] = outcome
        return outcomes

    @staticmethod
    def _give_up(requests: list[_Request]) -> None:
        """Resets the streams of requests still waiting (their sender stopped waiting)."""
        for request in requests:
            if not request.future.done():
                if request.connection is not None:
                    request.connection.cancel(request)
                request.future.cancel()

    @property
    def has_connection(self) -> bool:
        return any(connection.usable for connection in self._connections)

    async def connect(self) -> None:
        """Open a connection now, unless one is usable (`NotHTTP2Error`: the server does not
        speak HTTP/2)."""
        if not self.has_connection:
            await self._connect()

    def close(self) -> None:
        self._closed = True
        connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    async def aclose(self) -> None:
        self.close()

    async def _dispatch(self, request: _Request) -> None:
        connection = self._pick()
        if connection is None:
            connection = await self._connect()
        connection.submit(request)

    def _pick(self) -> _Connection | None:
        """The connection with the most room; None when another should open."""
        best, best_capacity = None, None
        for connection in self._connections:
            if connection.usable:
                capacity = connection.capacity
                if capacity > 0:
                    return connection
                if best_capacity is None or capacity > best_capacity:
                    best, best_capacity = connection, capacity
        if best is not None and len(self._connections) >= self.max_connections:
            return best  # queue on the least loaded
        return None

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, future: asyncio.Future) -> None:
        self._connecting = None
        if not future.cancelled() and future.exception() is None:
            self._connections.append(future.result())

    async def _open(self) -> _Connection:
        if self._closed:
            raise HTTP2ConnectionError(f"{self.label}: pool closed")
        loop = asyncio.get_running_loop()

        def factory() -> _Connection:
            return _Connection(
                loop,
                self.label,
                self.max_streams,
                self._resend,
                self._forget,
                self.never_indexed,
                cleartext=self._ssl is None,
            )

        async with asyncio.timeout(self.timeout):
            if self.proxy is None:
                where = {"host": self.host, "port": self.port}
            else:
                where = {"sock": await open_tunnel(self.proxy, self.host, self.port)}
            transport, connection = await loop.create_connection(
                factory,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
                **where,
            )
            if self._ssl is not None:
                ssl_object = transport.get_extra_info("ssl_object")
                protocol = ssl_object.selected_alpn_protocol() if ssl_object else None
                if protocol != "h2":
                    connection.ready.cancel()  # nobody waits for its SETTINGS
                    transport.close()
                    raise NotHTTP2Error(
                        f"{self.label} does not speak HTTP/2 (ALPN chose {protocol!r}, not 'h2')"
                    )
            try:
                await connection.ready  # the server's SETTINGS: its stream limit
            except BaseException:
                transport.abort()
                raise
        return connection

    def _resend(self, requests: list[_Request]) -> None:
        for request in requests:
            task = asyncio.ensure_future(self._dispatch(request))
            task.add_done_callback(lambda done, request=request: _fail_if_raised(done, request))

    def _forget(self, connection: _Connection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)


async def each_with_timeout(
    send: Callable[[Headers, bytes], Awaitable[Response]],
    items: Sequence[tuple[Headers, bytes]],
    timeout: float,
) -> list[Outcome]:
    """`request_many`'s outcomes for a sender of one request at a time (HTTP/1.1)."""
    loop = asyncio.get_running_loop()

    async def one(headers: Headers, body: bytes) -> Outcome:
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                response = await send(headers, body)
        except TimeoutError:
            return TimeoutError(f"no answer within {timeout} s")
        except OSError as exc:
            return exc
        return response, (loop.time() - started) * 1000

    return list(await asyncio.gather(*(one(headers, body) for headers, body in items)))


def _fail_if_raised(task: asyncio.Future, request: _Request) -> None:
    if task.cancelled():
        error: BaseException = HTTP2ConnectionError("request cancelled")
    else:
        error = task.exception()
        if error is None:
            return
    if not request.future.done():
        request.future.set_exception(error)
