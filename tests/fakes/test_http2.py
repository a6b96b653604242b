"""The fake APNs' hand-written HTTP/2 layer (`fakes/http2.py`), driven by the `h2`
library as a client: in process over a fake transport, and over TLS against the running fake."""

import json
import os
import random
import socket
import ssl
import time
import uuid
from pathlib import Path

import jwt
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman as hpack_decode_huffman

from fakes import http2
from fakes.apns_server import FakeAPNs
from fakes.huffman import decode_huffman
from fakes.state import ensure_state
from tests.adapters.conftest import hex_token

PAYLOAD = json.dumps({"aps": {"alert": {"title": "Hi"}}}).encode()


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.data += data

    def get_extra_info(self, name, default=None):
        return default

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _Pair:
    """An h2 client connected to a fake APNs connection object through memory."""

    def __init__(self, app: FakeAPNs, client_settings=None) -> None:
        self.transport = _Transport()
        self.server = app.protocol()
        self.server.connection_made(self.transport)
        self.client = H2Connection(H2Configuration(client_side=True))
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.responses: dict[int, dict] = {}
        self.events: list = []
        self.exchange()

    def send_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.transport.closed:
            buffer = self.server.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            self.server.buffer_updated(size)
            view = view[size:]

    def exchange(self) -> list:
        """Client output to the server, server output to the client; the client's events."""
        events = []
        while True:
            outgoing = self.client.data_to_send()
            if outgoing:
                self.send_raw(outgoing)
            incoming = bytes(self.transport.data)
            self.transport.data.clear()
            if not incoming:
                break
            events += self.client.receive_data(incoming)
        for event in events:
            if isinstance(event, ResponseReceived):
                self.responses[event.stream_id] = {"headers": dict(event.headers), "body": b""}
            elif isinstance(event, DataReceived):
                self.responses[event.stream_id]["body"] += event.data
                self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.events += events
        return events

    def request(self, headers, body: bytes = PAYLOAD, **kwargs) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, headers, end_stream=not body, **kwargs)
        if body:
            self.client.send_data(stream_id, body, end_stream=True)
        return stream_id


@pytest.fixture(scope="module")
def app(fakes):
    return FakeAPNs(ensure_state(fakes.state_dir))


@pytest.fixture(scope="module")
def authorization(fakes):
    key = Path(fakes.apns_key_file).read_text()
    token = jwt.encode(
        {"iss": fakes.apns_team_id, "iat": int(time.time())},
        key,
        algorithm="ES256",
        headers={"kid": fakes.apns_key_id},
    )
    return f"bearer {token}"


def _headers(authorization, token=None, **extra):
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        # "c0": no behaviour prefix (dead, 5104, ...) starts so, so a random token succeeds.
        (":path", f"/3/device/{token or hex_token('c0')}"),
        ("host", "127.0.0.1"),
        ("apns-id", str(uuid.uuid4())),
        ("apns-topic", "com.example.signal"),
        ("apns-push-type", "alert"),
        ("authorization", authorization),
    ]
    headers += list(extra.items())
    return headers


def _status(response) -> int:
    return int(response["headers"][b":status"])


def _reason(response) -> str | None:
    return json.loads(response["body"])["reason"] if response["body"] else None


def test_a_request_gets_200_with_its_apns_id(app, authorization):
    pair = _Pair(app)
    headers = _headers(authorization)
    stream_id = pair.request(headers)
    pair.exchange()
    response = pair.responses[stream_id]
    assert _status(response) == 200
    assert response["headers"][b"apns-id"] == dict(headers)["apns-id"].encode()
    assert response["body"] == b""


def _frames(data: bytes):
    """(type, flags, stream id, payload) of each frame the server wrote."""
    frames, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        frame_type, flags = data[pos + 3], data[pos + 4]
        stream_id = int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        frames.append((frame_type, flags, stream_id, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return frames


def test_header_block_split_over_continuation_frames(app, authorization):
    transport = _Transport()
    server = app.protocol()
    server.connection_made(transport)
    block = Encoder().encode(_headers(authorization, token=hex_token("dead")))
    parts = [block[i : i + 40] for i in range(0, len(block), 40)]
    assert len(parts) > 3
    raw = http2.PREFACE + http2.settings_frame({})
    raw += http2.frame(http2.HEADERS, 0, 1, parts[0])
    for index, part in enumerate(parts[1:], 1):
        flags = http2.END_HEADERS if index == len(parts) - 1 else 0
        raw += http2.frame(http2.CONTINUATION, flags, 1, part)
    raw += http2.frame(http2.DATA, http2.END_STREAM, 1, PAYLOAD)
    # Delivered a few bytes at a time: frames cut anywhere must be put back together.
    for i in range(0, len(raw), 7):
        chunk = raw[i : i + 7]
        server.get_buffer(len(chunk))[: len(chunk)] = chunk
        server.buffer_updated(len(chunk))
    assert not transport.closed
    frames = _frames(bytes(transport.data))
    settings = [f for f in frames if f[0] == http2.SETTINGS]
    assert [f[1] for f in settings] == [0, http2.ACK]  # ours, then the ACK of the client's
    [headers] = [f for f in frames if f[0] == http2.HEADERS]
    assert headers[1:3] == (http2.END_HEADERS, 1)
    decoded = dict(Decoder().decode(headers[3], raw=True))
    assert decoded[b":status"] == b"410"
    assert decoded[b"content-type"] == b"application/json"
    [data] = [f for f in frames if f[0] == http2.DATA]
    assert data[1:3] == (http2.END_STREAM, 1)
    assert json.loads(data[3])["reason"] == "Unregistered"


def test_padded_and_prioritised_frames(app, authorization):
    pair = _Pair(app)
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_headers(
        stream_id, _headers(authorization, token=hex_token("bad0")), priority_weight=200
    )
    pair.client.send_data(stream_id, PAYLOAD, end_stream=True, pad_length=17)
    pair.exchange()
    response = pair.responses[stream_id]
    assert (_status(response), _reason(response)) == (400, "BadDeviceToken")


def test_many_concurrent_streams_are_all_answered(app, authorization):
    pair = _Pair(app)
    streams = [pair.request(_headers(authorization)) for _ in range(900)]
    # The whole lot arrives as one read: one pass, one write.
    writes = []
    pair.transport.write = lambda data: writes.append(data) or pair.transport.data.extend(data)
    pair.exchange()
    assert [_status(pair.responses[s]) for s in streams] == [200] * 900
    assert len(writes) <= 2


def test_streams_beyond_the_limit_are_refused(app, authorization):
    pair = _Pair(app)
    # Requests whose body never ends stay open; h2 would stop at our limit, so lift its view.
    pair.client.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 2000
    pair.client.remote_settings.acknowledge()
    open_streams = []
    for _ in range(http2.MAX_CONCURRENT_STREAMS + 1):
        stream_id = pair.client.get_next_available_stream_id()
        pair.client.send_headers(stream_id, _headers(authorization))
        open_streams.append(stream_id)
    events = pair.exchange()
    resets = [e for e in events if isinstance(e, StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [
        (open_streams[-1], http2.REFUSED_STREAM)
    ]
    pair.client.send_data(open_streams[0], PAYLOAD, end_stream=True)
    pair.exchange()
    assert _status(pair.responses[open_streams[0]]) == 200


def test_a_payload_over_4096_bytes_is_rejected_413(app, authorization):
    pair = _Pair(app)
    body = json.dumps({"aps": {}, "blob": "x" * 40_000}).encode()
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream_id, _headers(authorization))
    for start in range(0, len(body), 10_000):  # several DATA frames
        end_stream = start + 10_000 >= len(body)
        pair.client.send_data(stream_id, body[start : start + 10_000], end_stream=end_stream)
    pair.exchange()
    response = pair.responses[stream_id]
    assert (_status(response), _reason(response)) == (413, "PayloadTooLarge")


def test_request_checks(app, authorization):
    pair = _Pair(app)
    cases = {
        pair.request(_headers(authorization, token="abc")): (400, "BadDeviceToken"),
        pair.request(_headers(authorization, token="zz" * 32)): (400, "BadDeviceToken"),
        pair.request(_headers(authorization), body=b""): (400, "PayloadEmpty"),
        pair.request(_headers(authorization), body=b"[1]"): (400, "PayloadEmpty"),
        pair.request(_headers("bearer nope")): (403, "InvalidProviderToken"),
        pair.request(_headers("basic x")): (403, "MissingProviderToken"),
        pair.request(_headers(authorization, **{"apns-priority": "7"})): (400, "BadPriority"),
        pair.request(
            _headers(authorization, **{"apns-push-type": "background", "apns-priority": "10"})
        ): (400, "BadPriority"),
        pair.request(_headers(authorization, **{"apns-expiration": "soon"})): (
            400,
            "BadExpirationDate",
        ),
        pair.request(_headers(authorization, **{"apns-collapse-id": "c" * 65})): (
            400,
            "BadCollapseId",
        ),
        pair.request(_headers(authorization, token=hex_token("0429"))): (429, "TooManyRequests"),
    }
    wrong_topic = [
        (k, v) if k != "apns-topic" else (k, "other") for k, v in _headers(authorization)
    ]
    cases[pair.request(wrong_topic)] = (400, "DeviceTokenNotForTopic")
    pair.exchange()
    for stream_id, expected in cases.items():
        response = pair.responses[stream_id]
        assert (_status(response), _reason(response)) == expected
    retry = pair.responses[next(s for s, e in cases.items() if e[0] == 429)]
    assert retry["headers"][b"retry-after"] == b"1"


def test_error_bodies_wait_for_the_clients_flow_control_window(app, authorization):
    # A client that grants 20 bytes per stream gets its error bodies in pieces, each after a
    # WINDOW_UPDATE (which `exchange` sends as it reads DATA).
    pair = _Pair(app, {SettingCodes.INITIAL_WINDOW_SIZE: 20})
    streams = [pair.request(_headers(authorization, token=hex_token("dead"))) for _ in range(30)]
    for _ in range(100):
        if not pair.exchange():
            break
    for stream_id in streams:
        response = pair.responses[stream_id]
        assert (_status(response), _reason(response)) == (410, "Unregistered")
    data_frames = [e for e in pair.events if isinstance(e, DataReceived)]
    assert max(len(e.data) for e in data_frames) <= 20
    assert len([e for e in pair.events if isinstance(e, StreamEnded)]) == 30


def test_ping_is_acknowledged(app):
    pair = _Pair(app)
    pair.client.ping(b"12345678")
    events = pair.exchange()
    assert [e.ping_data for e in events if isinstance(e, PingAckReceived)] == [b"12345678"]


def test_a_client_goaway_closes_the_connection(app):
    pair = _Pair(app)
    pair.client.close_connection()
    pair.exchange()
    assert pair.transport.closed


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (http2.frame(http2.DATA, 0, 0, b"x"), http2.PROTOCOL_ERROR),  # DATA on stream 0
        (http2.frame(http2.HEADERS, 0x4, 2, b"\x82"), http2.PROTOCOL_ERROR),  # even stream id
        (http2.frame(http2.PING, 0, 0, b"1234"), http2.FRAME_SIZE_ERROR),
        (http2.frame(http2.CONTINUATION, 0x4, 1, b"\x82"), http2.PROTOCOL_ERROR),
        (http2.frame(http2.HEADERS, 0x4, 1, b"\x80"), http2.COMPRESSION_ERROR),  # index 0
        (http2.frame(http2.HEADERS, 0x4, 1, b"\xff\xff\xff"), http2.COMPRESSION_ERROR),
        (b"\x00\x40\x01\x00\x00\x00\x00\x00\x00", http2.FRAME_SIZE_ERROR),  # 16 KiB + 1
        (http2.frame(http2.SETTINGS, 0, 0, b"\x00\x04\x80\x00\x00\x00"), http2.FLOW_CONTROL_ERROR),
    ],
)
def test_protocol_violations_end_the_connection_with_goaway(app, raw, code):
    pair = _Pair(app)
    pair.send_raw(raw)
    events = pair.client.receive_data(bytes(pair.transport.data))
    terminated = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in terminated] == [code]
    assert pair.transport.closed


def test_a_missing_preface_ends_the_connection(app):
    transport = _Transport()
    server = app.protocol()
    server.connection_made(transport)
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    server.get_buffer(len(data))[: len(data)] = data
    server.buffer_updated(len(data))
    assert transport.closed


def test_hpack_decoder_matches_the_hpack_library():
    rng = random.Random(7)
    encoder = Encoder()
    decoder = http2.HPACKDecoder()
    names = [b"apns-id", b"x-custom", b":path", b"content-type", b"authorization"]
    for round_ in range(300):
        headers = [
            (rng.choice(names), os.urandom(rng.randint(0, 120)).hex().encode())
            for _ in range(rng.randint(1, 12))
        ]
        headers.append(NeverIndexedHeaderTuple(b"authorization", b"bearer x.y.z"))
        if round_ % 50 == 7:
            encoder.header_table_size = rng.choice([0, 256, 4096])  # emits a size update
        block = encoder.encode(headers, huffman=bool(round_ % 2))
        decoded = decoder.decode(block)
        assert decoded == dict(headers)


def test_huffman_decoder_matches_the_hpack_library():
    rng = random.Random(11)
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    for _ in range(2000):
        text = bytes(rng.randrange(256) for _ in range(rng.randint(0, 90)))
        assert decode_huffman(encoder.encode(text)) == text
    for _ in range(5000):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            expected = hpack_decode_huffman(data)
        except Exception:  # noqa: BLE001 - whatever hpack rejects, ours must reject too
            expected = None
        try:
            got = decode_huffman(data)
        except Exception:  # noqa: BLE001
            got = None
        assert got == expected, data


# --- over TLS, against the running fake ---------------------------------------------------------


def _tls_client(fakes, alpn="h2"):
    context = ssl.create_default_context(cafile=fakes.ca_file)
    context.set_alpn_protocols([alpn])
    port = int(fakes.apns_endpoint.rsplit(":", 1)[1])
    sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
    )
    return sock


def _read_until(sock, client, done, limit=10.0):
    events, deadline = [], time.monotonic() + limit
    while not done(events) and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        events += client.receive_data(data)
        outgoing = client.data_to_send()
        if outgoing:
            sock.sendall(outgoing)
    return events


def test_over_tls_many_streams_continuation_and_admin(fakes, authorization):
    sock = _tls_client(fakes)
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    _read_until(sock, client, lambda events: client.remote_settings.max_concurrent_streams == 1000)
    assert client.remote_settings.max_concurrent_streams == 1000
    streams = []
    for index in range(400):
        stream_id = client.get_next_available_stream_id()
        prefix = "dead" if index % 4 == 0 else "c0"
        client.send_headers(stream_id, _headers(authorization, token=hex_token(prefix)))
        client.send_data(stream_id, PAYLOAD, end_stream=True)
        streams.append(stream_id)
    # A header block the client splits: a 20 KiB header forces CONTINUATION frames.
    big = client.get_next_available_stream_id()
    client.send_headers(big, _headers(authorization, **{"x-padding": "p" * 20_000}))
    client.send_data(big, PAYLOAD, end_stream=True)
    stats = client.get_next_available_stream_id()
    client.send_headers(
        stats,
        [(":method", "GET"), (":scheme", "https"), (":path", "/__stats"), (":authority", "x")],
        end_stream=True,
    )
    sock.sendall(client.data_to_send())
    wanted = {*streams, big, stats}
    events = _read_until(
        sock,
        client,
        lambda events: wanted <= {e.stream_id for e in events if isinstance(e, StreamEnded)},
    )
    statuses = {
        e.stream_id: dict(e.headers)[b":status"] for e in events if isinstance(e, ResponseReceived)
    }
    assert [statuses[s] for s in streams] == [b"410" if i % 4 == 0 else b"200" for i in range(400)]
    assert statuses[big] == b"200"
    assert statuses[stats] == b"200"
    body = b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stats)
    assert json.loads(body)["requests"] >= 401
    client.close_connection()
    sock.sendall(client.data_to_send())
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except (ssl.SSLError, ConnectionError):
        pass  # closed either way: the fake ended the connection after our GOAWAY
    sock.close()
