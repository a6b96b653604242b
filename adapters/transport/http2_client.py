"""A small asyncio HTTP/2 client on `h2`: a few long-lived connections to one origin, many
concurrent streams each, for request/response APIs with small bodies (APNs, FCM HTTP v1).

Why not a library: the send path's CPU, measured (`bench/RESULTS.md`). Through aioapns an
APNs send cost 2.7 times the CPU of an FCM send over this client (29 % of the campaign
workers' samples against 11 %; client CPU per APNs message 274-293 us, here 136-182 us), and
FCM over aiohttp's HTTP/1.1 cost 118-134 us per message, here 89-100 us. The savings: a
request's own header values (the APNs device-token `:path`, `apns-id`) go out as
never-indexed HPACK literals instead of being searched for and added to the dynamic table;
every other field's encoding is kept while the table stands; no Huffman coding; h2 neither
re-validates nor normalises headers we built; we count open streams instead of h2 walking
them all on every new stream; what a loop pass produced leaves in one `transport.write`
(scheduled with `loop.call_soon`).

That takes internals of h2 4.4.1 and hpack 4.2.0, pinned in requirements.txt. Either may
change them in any release; `tests/adapters/test_h2_internals.py` checks each one, and this
module must be reviewed before either is upgraded:

* hpack `Encoder.__init__` sets `header_table` (a `hpack.table.HeaderTable`), which
  `_PlainEncoder` replaces with a `_CountingTable`.
* hpack `Encoder.add(to_add, sensitive, huffman=False) -> bytes` encodes one field and
  changes the dynamic table only through `self.header_table.add(name, value)`;
  `Encoder.encode(headers, huffman=True)`; the private `Encoder._encode_table_size_change()`
  (the pending size updates in `Encoder.table_size_changes`).
* hpack `HeaderTable.add(name, value)` (overridden, to count insertions) and
  `HeaderTable.resized`, set when `maxsize` changes, cleared by the encoder that emits the
  size update; `dynamic_entries` changes only through `add` and a resize.
* `hpack.hpack.encode_integer(integer, prefix_bits) -> bytearray` (not exported by hpack).
* h2 `H2Connection.encoder`: `send_headers` encodes with it (`encoder.encode(headers)`) and a
  peer's SETTINGS_HEADER_TABLE_SIZE sets its `header_table_size`; replaced by `_PlainEncoder`.
* h2 `H2Connection.open_outbound_streams`, a property, overridden: `send_headers` compares
  it with the peer's SETTINGS_MAX_CONCURRENT_STREAMS. h2's own (via the private
  `_open_streams`) is where h2 moves closed streams out of `streams`; ours does not.
* h2 `H2Connection.streams` (stream id -> `H2Stream`), `H2Stream.closed_by`, and the private
  `H2Connection._closed_streams`, an `h2.utilities.SizeLimitDict` that `_stream_closed_by`
  reads to ignore late frames on a stream we reset; `_H2Connection.forget_stream` moves an
  ended stream there as `_open_streams` would.
* h2 `H2Connection.MAX_CLOSED_STREAMS`, the class attribute `__init__` sizes
  `_closed_streams` with (65,536 in h2, 4,096 here).

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
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes
from hpack import Encoder
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

from adapters.transport.proxy import Proxy, open_tunnel

Headers = Sequence[tuple[bytes, bytes]]
Response = tuple[int, dict[bytes, bytes], bytes]

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


class _H2Connection(H2Connection):
    """h2's connection with the open-stream count taken from our own bookkeeping.

    h2 counts open streams by iterating over all of them whenever a stream opens; with
    hundreds in flight that is quadratic per batch. `_Connection` never opens more streams
    than the server allows and forgets ended streams itself (as `_open_streams` would).

    h2 remembers how its last 65,536 closed streams ended (to tell a late frame on a stream
    we reset from a protocol error): about 15 MB per busy connection, kept for as long as the
    connection, and a worker holds connections for up to 64 credential sets per adapter.
    Frames the server sent before it saw our reset arrive within a round trip, thousands of
    streams fewer than this limit even at full speed."""

    MAX_CLOSED_STREAMS = 2**12
    open_count = 0

    @property
    def open_outbound_streams(self) -> int:
        return self.open_count

    def forget_stream(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self._closed_streams[stream_id] = stream.closed_by


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


class _Connection(asyncio.Protocol):
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
        self.conn = _H2Connection(
            config=H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        self.conn.encoder = _PlainEncoder(never_indexed)
        self.streams: dict[int, _Request] = {}
        self.queue: collections.deque[_Request] = collections.deque()
        self._max_streams = max_streams  # our cap; the server's may be lower
        self._blocked: dict[int, bytes] = {}  # request body waiting for flow-control window
        self._flush_scheduled = False
        self._resend = resend
        self._lost = lost
        self._last_received = 0.0  # loop time of the last bytes from the server

    # -- pool interface --

    @property
    def capacity(self) -> int:
        """Streams that could start now (negative: requests queued beyond the limit)."""
        limit = min(self._max_streams, self.conn.remote_settings.max_concurrent_streams)
        return limit - len(self.streams) - len(self.queue)

    def submit(self, request: _Request) -> None:
        request.sent += 1
        request.connection = self
        if self.capacity > 0:
            self._start(request)
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
                with contextlib.suppress(H2Error):
                    self.conn.reset_stream(request.stream_id, ErrorCodes.CANCEL)
                self.conn.forget_stream(request.stream_id)
                self._schedule_flush()
            self._start_queued()
        else:
            with contextlib.suppress(ValueError):
                self.queue.remove(request)

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            try:
                self.conn.close_connection()
                self.transport.write(self.conn.data_to_send())
            except H2Error:
                pass
            self.transport.close()

    # -- asyncio --

    def connection_made(self, transport) -> None:
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            return  # not a word of HTTP/2 to it: the pool closes this connection
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.ENABLE_PUSH: 0})
        self.conn.increment_flow_control_window(_RECEIVE_WINDOW)
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        if not self.ready.done() and data[:5] == b"HTTP/":
            # h2 would wait for the rest of a "frame" of several megabytes.
            self._abort(self._not_http2(f"{self.label}: not an HTTP/2 server (HTTP/1 answer)"))
            return
        self._last_received = self.loop.time()
        try:
            events = self.conn.receive_data(data)
        except (H2Error, ValueError) as exc:
            if self.ready.done():
                self._abort(HTTP2ConnectionError(f"{self.label}: protocol error ({exc})"))
            else:
                self._abort(self._not_http2(f"{self.label}: not an HTTP/2 server? ({exc})"))
            return
        streams = self.streams
        for event in events:
            event_type = type(event)
            if event_type is ResponseReceived:
                request = streams.get(event.stream_id)
                if request is not None:
                    request.response = dict(event.headers)
            elif event_type is DataReceived:
                request = streams.get(event.stream_id)
                if request is not None:
                    request.data.append(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif event_type is StreamEnded:
                self._complete(event.stream_id)
            elif event_type is StreamReset:
                self._reset_by_server(event.stream_id, event.error_code)
            elif event_type is WindowUpdated:
                if self._blocked:
                    self._send_blocked()
            elif event_type is RemoteSettingsChanged:
                if not self.ready.done():
                    self.usable = True
                    self.ready.set_result(None)
                if self._blocked:  # the initial window may have grown
                    self._send_blocked()
                self._start_queued()
            elif event_type is ConnectionTerminated:
                self._goaway(event.last_stream_id, event.error_code)
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

    # -- internals --

    def _start(self, request: _Request) -> None:
        conn = self.conn
        try:
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, request.headers)
        except H2Error as exc:
            if not request.future.done():
                request.future.set_exception(
                    HTTP2ConnectionError(f"{self.label}: cannot open a stream ({exc!r})")
                )
            return
        conn.open_count += 1
        request.stream_id = stream_id
        request.started = self.loop.time()
        self.streams[stream_id] = request
        body = request.body
        size = len(body)
        if size <= conn.max_outbound_frame_size and size <= conn.local_flow_control_window(
            stream_id
        ):
            conn.send_data(stream_id, body, end_stream=True)
        else:
            self._blocked[stream_id] = body
            self._send_blocked()
        self._schedule_flush()

    def _start_queued(self) -> None:
        queue = self.queue
        while queue and self.usable and self.capacity + len(queue) > 0:
            request = queue.popleft()
            if not request.future.done():
                self._start(request)
        if not self.usable and not self.streams and self.ready.done():
            # After a GOAWAY: the last answer is in, close.
            self._flush()
            if self.transport is not None:
                self.transport.close()

    def _send_blocked(self) -> None:
        conn = self.conn
        for stream_id in list(self._blocked):
            body = self._blocked[stream_id]
            while body:
                size = min(
                    len(body),
                    conn.local_flow_control_window(stream_id),
                    conn.max_outbound_frame_size,
                )
                if size <= 0:
                    break
                chunk, body = body[:size], body[size:]
                conn.send_data(stream_id, chunk, end_stream=not body)
            if body:
                self._blocked[stream_id] = body
            else:
                del self._blocked[stream_id]

    def _end_stream(self, stream_id: int) -> _Request | None:
        request = self.streams.pop(stream_id, None)
        if request is not None:
            self.conn.open_count -= 1
            self._blocked.pop(stream_id, None)
        return request

    def _complete(self, stream_id: int) -> None:
        if stream_id in self._blocked:  # answered before its body was sent: stop sending it
            with contextlib.suppress(H2Error):
                self.conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        request = self._end_stream(stream_id)
        self.conn.forget_stream(stream_id)
        if request is not None and not request.future.done():
            headers = request.response or {}
            try:
                status = int(headers.get(b":status", b"0"))
            except ValueError:
                status = 0
            request.future.set_result((status, headers, b"".join(request.data)))
        self._start_queued()

    def _reset_by_server(self, stream_id: int, error_code: int) -> None:
        request = self._end_stream(stream_id)
        self.conn.forget_stream(stream_id)
        if request is not None and not request.future.done():
            if error_code == ErrorCodes.REFUSED_STREAM and request.sent <= _MAX_RESENDS:
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
            self.conn.forget_stream(stream_id)
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
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is not None and not self.transport.is_closing():
            data = self.conn.data_to_send()
            if data:
                self.transport.write(data)


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


def _fail_if_raised(task: asyncio.Future, request: _Request) -> None:
    if task.cancelled():
        error: BaseException = HTTP2ConnectionError("request cancelled")
    else:
        error = task.exception()
        if error is None:
            return
    if not request.future.done():
        request.future.set_exception(error)
