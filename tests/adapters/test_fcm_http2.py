"""FCM over HTTP/2: the fake's h2c side, and the adapter's HTTP/2 client (streams, limits,
lost connections, token refresh)."""

import asyncio
import json
import socket
import struct
import threading
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager

import google.auth.transport.requests
import h2.config
import h2.connection
import h2.events
import pytest
from google.oauth2 import service_account

from adapters.base import OutboundMessage
from adapters.fcm import SCOPES, FCMAdapter
from fakes.client import revoke_fcm_access_tokens
from fakes.http2 import GOAWAY, HTTP2ServerProtocol, encode_status, frame
from tests.adapters.conftest import fcm_token


def _message(token):
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, title="Hi", body="there")


def _access_token(fakes):
    account = fakes.fcm_credentials().values["service_account"]
    credentials = service_account.Credentials.from_service_account_info(account, scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


def _h2c_post(endpoint, path, headers, body):
    """One request over h2c with prior knowledge, with a bare socket and the h2 library."""
    host, port = endpoint.removeprefix("http://").split(":")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        conn.send_headers(
            1,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", f"{host}:{port}"),
                (":path", path),
                *headers,
            ],
        )
        conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        response, data = {}, b""
        while True:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the answer"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    response = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return response, data
            sock.sendall(conn.data_to_send())


def _http1_post(endpoint, path, headers, body):
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        f"{endpoint}{path}", data=body, headers=dict(headers), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.mark.parametrize("prefix", ["tok", "quota", "dead", "badtoken"])
def test_the_fake_answers_h2c_as_it_answers_http1(fakes, prefix):
    path = "/v1/projects/signal-fake/messages:send"
    headers = [("authorization", f"Bearer {_access_token(fakes)}")]
    body = json.dumps({"message": {"token": fcm_token(prefix)}}).encode()
    h2_headers, h2_body = _h2c_post(fakes.fcm_endpoint, path, headers, body)
    status, h1_headers, h1_body = _http1_post(fakes.fcm_endpoint, path, headers, body)
    assert int(h2_headers[b":status"]) == status
    assert h2_headers.get(b"retry-after") == (
        h1_headers["Retry-After"].encode() if "Retry-After" in h1_headers else None
    )
    if status == 200:
        assert json.loads(h2_body)["name"].startswith("projects/signal-fake/messages/")
    else:
        assert json.loads(h2_body) == json.loads(h1_body)
    # A 401 without a token, over h2 too.
    unauthorized, _ = _h2c_post(fakes.fcm_endpoint, path, [], body)
    assert unauthorized[b":status"] == b"401"


def test_many_streams_beyond_the_servers_limit_queue_on_one_connection(fakes):
    fakes.reset()
    adapter = FCMAdapter(
        endpoint=fakes.fcm_endpoint, timeout=10, max_concurrency=5000, max_connections=1
    )
    try:
        messages = [_message(fcm_token()) for _ in range(2500)]  # the fake allows 1000 streams
        results = adapter.send_batch(fakes.fcm_credentials(), messages)
        [client] = adapter._clients.values()
        assert len(client.pool.http2._connections) == 1
    finally:
        adapter.close()
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    assert fakes.fcm_stats()["by_status"] == {"200": 2500}


def test_a_busy_connection_keeps_nothing_of_its_ended_streams(fakes):
    """A connection lives as long as its worker: 5,000 streams later it holds no state of
    any of them (h2 kept how each of its last 65,536 closed streams ended, ~15 MB)."""
    fakes.reset()
    adapter = FCMAdapter(endpoint=fakes.fcm_endpoint, timeout=10, max_connections=1)
    try:
        results = adapter.send_batch(
            fakes.fcm_credentials(), [_message(fcm_token()) for _ in range(5000)]
        )
        [client] = adapter._clients.values()
        [connection] = client.pool.http2._connections
        remembered = (
            len(connection.streams),
            len(connection._stream_windows),
            len(connection._blocked),
            connection._next_stream_id,
        )
    finally:
        adapter.close()
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    assert remembered == (0, 0, 0, 2 * 5000 + 1)


def test_a_401_over_h2_refreshes_the_token_and_retries_once(fcm, fakes):
    credentials = fakes.fcm_credentials()
    assert fcm.send_batch(credentials, [_message(fcm_token())])[0].ok
    [client] = fcm._clients.values()
    [connection] = client.pool.http2._connections
    revoke_fcm_access_tokens(fakes.fcm_endpoint)
    fakes.reset()
    results = fcm.send_batch(credentials, [_message(fcm_token()) for _ in range(30)])
    assert all(r.ok for r in results), results
    assert client.pool.http2._connections == [connection]  # the same HTTP/2 connection throughout
    stats = fakes.fcm_stats()
    assert stats["token_requests"] == 1
    assert stats["by_status"] == {"401": 30, "200": 30}


@contextmanager
def _server(protocol_factory):
    """An asyncio server on a loop in its own thread; yields its http:// endpoint."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(protocol_factory, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


class _DiesAfter(HTTP2ServerProtocol):
    """Answers the first `answered` requests, then drops the connection."""

    answered = 5

    def __init__(self):
        super().__init__()
        self.count = 0

    def request_received(self, stream_id, headers, body):
        self.count += 1
        if self.count <= self.answered:
            self.send_response(stream_id, encode_status(200), b'{"name": "projects/p/messages/1"}')
        elif self.transport is not None:
            self.flush()
            self.transport.close()


def test_a_connection_lost_mid_batch_gives_network_errors(fakes):
    with _server(_DiesAfter) as endpoint:
        adapter = FCMAdapter(endpoint=endpoint, timeout=5)
        try:
            results = adapter.send_batch(
                fakes.fcm_credentials(), [_message(fcm_token()) for _ in range(20)]
            )
        finally:
            adapter.close()
    assert all(r.ok for r in results[:5]), results[:5]
    for result in results[5:]:
        assert (result.ok, result.error_code, result.permanent) == (False, "network_error", False)
        assert "connection lost" in result.error_message


class _GoesAway(HTTP2ServerProtocol):
    """The first connection answers 3 requests, then GOAWAY naming the third; later ones
    answer everything."""

    connections = 0

    def __init__(self):
        super().__init__()
        type(self).connections += 1
        self.first = type(self).connections == 1
        self.count = 0

    def request_received(self, stream_id, headers, body):
        self.count += 1
        if not self.first or self.count <= 3:
            self.send_response(stream_id, encode_status(200), b'{"name": "projects/p/messages/1"}')
        elif not self._closed:
            self._out.append(frame(GOAWAY, 0, 0, struct.pack(">LL", 5, 0)))
            self._closed = True
            self.flush()
            self.transport.close()


def test_requests_a_goaway_left_unprocessed_go_again_on_a_new_connection(fakes):
    with _server(_GoesAway) as endpoint:
        adapter = FCMAdapter(endpoint=endpoint, timeout=5)
        try:
            results = adapter.send_batch(
                fakes.fcm_credentials(), [_message(fcm_token()) for _ in range(20)]
            )
        finally:
            adapter.close()
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    assert _GoesAway.connections == 2
