"""The HTTP/2 client's own framing (`adapters.transport.http2_client._Connection`) against an
independent peer: h2's server-side state machine, which raises on any frame a client may not
send. Bytes go both ways through in-memory transports, so each rule of RFC 9113 the client
keeps is checked on its own: requests and answers, the peer's settings, flow control both
ways, CONTINUATION, padding, PING, RST_STREAM, GOAWAY and late frames on a reset stream."""

from __future__ import annotations

import asyncio

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    RequestReceived,
    StreamEnded,
)
from h2.settings import SettingCodes

from adapters.transport.http2_client import (
    HTTP2ConnectionError,
    _Connection,
    _Request,
)
from tests.adapters.test_hpack_internals import REQUEST


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data


class _Pair:
    """Our client connection and h2's server, connected through memory."""

    def __init__(self, server_settings: dict | None = None, max_streams: int = 100) -> None:
        self.loop = asyncio.get_running_loop()
        self.resent: list[_Request] = []
        self.client = _Connection(
            self.loop,
            "test",
            max_streams,
            self.resent.extend,
            lambda connection: None,
            frozenset({b":path"}),
        )
        self.transport = _Transport()
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.server.initiate_connection()
        if server_settings:
            self.server.update_settings(server_settings)
        self.events: list = []
        self.client.connection_made(self.transport)

    async def exchange(self, rounds: int = 4) -> list:
        """Passes bytes both ways until both sides are quiet; returns the server's events."""
        events = []
        for _ in range(rounds):
            await asyncio.sleep(0)  # the client's scheduled flush
            to_server = self.transport.take()
            if to_server:
                events += self.server.receive_data(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                self.client.data_received(to_client)
            if not to_server and not to_client:
                break
        self.events += events
        return events

    def request(self, headers=REQUEST, body: bytes = b"{}") -> _Request:
        request = _Request(headers, body, self.loop.create_future())
        self.client.submit(request)
        return request

    def answer(self, stream_id: int, body: bytes = b"", status: bytes = b"200", **kw) -> None:
        self.server.send_headers(stream_id, [(b":status", status), (b"apns-id", b"x")])
        self.server.send_data(stream_id, body, end_stream=True, **kw)


def _bodies(events) -> dict[int, bytes]:
    bodies: dict[int, bytes] = {}
    for event in events:
        if isinstance(event, DataReceived):
            bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
    return bodies


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_request_and_its_answer():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        assert pair.client.ready.done() and pair.client.usable
        first, second = pair.request(body=b'{"a":1}'), pair.request(body=b"")
        events = await pair.exchange()
        received = [e for e in events if isinstance(e, RequestReceived)]
        assert [list(map(tuple, e.headers)) for e in received] == [REQUEST, REQUEST]
        assert _bodies(events) == {1: b'{"a":1}'}
        assert {e.stream_id for e in events if isinstance(e, StreamEnded)} == {1, 3}
        pair.answer(1, b'{"reason":"BadDeviceToken"}', status=b"400")
        pair.answer(3)
        await pair.exchange()
        status, headers, body = first.future.result()
        assert (status, headers[b"apns-id"], body) == (400, b"x", b'{"reason":"BadDeviceToken"}')
        assert second.future.result()[0] == 200
        assert pair.client.streams == {}

    run(scenario())


def test_the_servers_header_table_size_and_stream_limit_are_honoured():
    async def scenario():
        pair = _Pair({SettingCodes.HEADER_TABLE_SIZE: 256, SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        await pair.exchange()
        assert pair.client.encoder.header_table.maxsize == 256
        requests = [pair.request() for _ in range(3)]
        events = await pair.exchange()
        assert len([e for e in events if isinstance(e, RequestReceived)]) == 1
        assert len(pair.client.queue) == 2
        for stream_id in (1, 3, 5):
            pair.answer(stream_id)
            events = await pair.exchange()
        assert all(r.future.result()[0] == 200 for r in requests)
        received = [e for e in pair.events if isinstance(e, RequestReceived)]
        assert [list(map(tuple, e.headers)) for e in received] == [REQUEST] * 3

    run(scenario())


def test_a_body_beyond_the_servers_window_waits_for_window_updates():
    async def scenario():
        pair = _Pair({SettingCodes.INITIAL_WINDOW_SIZE: 100})
        await pair.exchange()
        body = bytes(range(256)) * 4  # 1,024 octets against a stream window of 100
        request = pair.request(body=body)
        events = await pair.exchange()
        assert _bodies(events) == {1: body[:100]}
        while not any(isinstance(e, StreamEnded) for e in pair.events):
            pair.server.acknowledge_received_data(100, 1)
            await pair.exchange()
        assert _bodies(pair.events) == {1: body}
        pair.answer(1)
        await pair.exchange()
        assert request.future.result()[0] == 200

    run(scenario())


def test_a_long_answer_gives_the_stream_window_back_as_it_arrives():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        request = pair.request()
        await pair.exchange()
        body = b"x" * 200_000  # three times the stream's initial window
        pair.server.send_headers(1, [(b":status", b"200")])
        sent = 0
        for _ in range(50):
            window = pair.server.local_flow_control_window(1)
            chunk = body[sent : sent + min(window, pair.server.max_outbound_frame_size)]
            if chunk:
                sent += len(chunk)
                pair.server.send_data(1, chunk, end_stream=sent == len(body))
            await pair.exchange()
            if request.future.done():
                break
        assert request.future.result()[2] == body

    run(scenario())


def test_continuation_padding_and_ping():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        request = pair.request()
        await pair.exchange()
        big = b"v" * 40_000  # a header block beyond one frame: HEADERS + CONTINUATION
        pair.server.send_headers(1, [(b":status", b"200"), (b"x-big", big)])
        pair.server.send_data(1, b"padded", end_stream=True, pad_length=20)
        pair.server.ping(b"12345678")
        events = await pair.exchange()
        status, headers, body = request.future.result()
        assert (status, headers[b"x-big"], body) == (200, big, b"padded")
        assert [e.ping_data for e in events if isinstance(e, PingAckReceived)] == [b"12345678"]

    run(scenario())


def test_a_late_answer_on_a_cancelled_stream_is_ignored_and_the_table_stays_in_step():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        cancelled, kept = pair.request(), pair.request()
        await pair.exchange()
        cancelled.started = -1.0  # the server sent something since it opened: not dead
        pair.client.cancel(cancelled)
        # The server answers both before it reads the reset; its first answer indexes a
        # header the second one refers to.
        pair.server.send_headers(1, [(b":status", b"200"), (b"x-shared", b"indexed")])
        pair.server.send_data(1, b"late", end_stream=True)
        pair.server.send_headers(3, [(b":status", b"200"), (b"x-shared", b"indexed")])
        pair.server.send_data(3, b"kept", end_stream=True)
        await pair.exchange()  # the server reads the reset of a stream it has closed: ignored
        assert not cancelled.future.done()
        assert kept.future.result()[1][b"x-shared"] == b"indexed"
        assert kept.future.result()[2] == b"kept"

    run(scenario())


def test_goaway_sends_the_unprocessed_requests_again_and_fails_none_processed():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        processed, unprocessed = pair.request(), pair.request()
        await pair.exchange()
        # Stream 1 is answered; then the server goes away having processed nothing after it.
        pair.answer(1)
        pair.server.close_connection(error_code=ErrorCodes.NO_ERROR, last_stream_id=1)
        await pair.exchange()
        assert pair.resent == [unprocessed] and not pair.client.usable
        assert processed.future.result()[0] == 200
        assert pair.transport.closed  # the last answer is in: closed

    run(scenario())


def test_a_stream_reset_by_the_server_fails_its_request():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        request = pair.request()
        await pair.exchange()
        pair.server.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
        await pair.exchange()
        with pytest.raises(HTTP2ConnectionError, match="reset by the server"):
            request.future.result()

    run(scenario())


def test_a_frame_breaking_the_protocol_ends_the_connection():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        request = pair.request()
        await pair.exchange()
        # DATA on stream 0.
        pair.client.data_received(b"\x00\x00\x02\x00\x01\x00\x00\x00\x00ok")
        with pytest.raises(HTTP2ConnectionError, match="protocol error"):
            request.future.result()
        assert pair.transport.closed

    run(scenario())


def test_closing_says_goaway_naming_no_stream_of_the_server():
    async def scenario():
        pair = _Pair()
        await pair.exchange()
        request = pair.request()
        await pair.exchange()
        pair.answer(1)
        await pair.exchange()
        assert request.future.result()[0] == 200
        pair.client.close()
        events = pair.server.receive_data(pair.transport.take())
        [goaway] = [e for e in events if isinstance(e, ConnectionTerminated)]
        assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, 0)

    run(scenario())
