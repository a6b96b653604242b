"""FCM against endpoints that are not our fake, in each protocol they may speak: HTTP/1.1 only
(aiohttp.web, cleartext and TLS with ALPN http/1.1), HTTP/2 over TLS (Hypercorn, ALPN h2)
and over cleartext with prior knowledge (Hypercorn h2c)."""

import asyncio
import contextlib
import uuid

import pytest

from adapters.base import OutboundMessage
from adapters.fcm import FCMAdapter
from adapters.transport.http2_client import HTTP2Pool, NotHTTP2Error
from tests.adapters.servers import FCMLike, aiohttp_fcm, fcm_credentials, hypercorn_fcm, make_tls

# (server, TLS?, what the server sees, the pool's protocol)
ENDPOINTS = {
    "http1-cleartext": (aiohttp_fcm, False, "HTTP/1.1", "http/1.1"),
    "http1-tls-alpn-http1": (aiohttp_fcm, True, "HTTP/1.1", "http/1.1"),
    "h2-tls-alpn-h2": (hypercorn_fcm, True, "HTTP/2", "h2"),
    "h2c-prior-knowledge": (hypercorn_fcm, False, "HTTP/2", "h2"),
}


def _message(token):
    return OutboundMessage(message_id=str(uuid.uuid4()), token=token, title="Hi", body="there")


def _token(prefix="tok"):
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture
def tls(tmp_path):
    return make_tls(tmp_path)


@contextlib.contextmanager
def _endpoint(kind, state, tls):
    server, secure, _, _ = ENDPOINTS[kind]
    with server(state, tls if secure else None) as origin:
        yield origin


@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_messages_arrive_and_answers_map_alike_on_every_protocol(kind, tls):
    _, _, seen, negotiated = ENDPOINTS[kind]
    state = FCMLike()
    with _endpoint(kind, state, tls) as origin:
        adapter = FCMAdapter(endpoint=origin, timeout=5, ca_file=tls.ca_file, http1_connections=4)
        try:
            credentials = fcm_credentials(origin)
            messages = [_message(_token()) for _ in range(20)]
            messages += [_message(_token("dead")), _message(_token("busy"))]
            first = adapter.send_batch(credentials, messages)
            [client] = adapter._clients.values()
            protocol = client.pool.protocol
            second = adapter.send_batch(credentials, [_message(_token()) for _ in range(10)])
            state.revoke_tokens()  # the next sends get 401 UNAUTHENTICATED: a new token, once
            renewed = adapter.send_batch(credentials, [_message(_token()) for _ in range(5)])
        finally:
            adapter.close()

    assert [r.message_id for r in first] == [m.message_id for m in messages]
    for result in first[:20] + second + renewed:
        assert result.ok, result
        assert result.provider_id.startswith("projects/proto-test/messages/")
    dead, busy = first[20:]
    assert (dead.status_code, dead.error_code, dead.token_invalid, dead.permanent) == (
        404,
        "UNREGISTERED",
        True,
        True,
    )
    assert (busy.status_code, busy.error_code, busy.retry_after, busy.permanent) == (
        503,
        "UNAVAILABLE",
        7.0,
        False,
    )
    assert protocol == negotiated
    assert state.protocols() == {seen}
    # Each message reached the server once (the probe sent none), and the 5 after the
    # revocation twice: 401, then 200 with the one new token.
    assert len(state.sends) == 22 + 10 + 5 + 5
    assert state.by_status() == {200: 20 + 10 + 5, 404: 1, 503: 1, 401: 5}
    assert state.token_requests == 2
    # Keep-alive: 42 requests over a bounded pool (4 HTTP/1.1 connections, or 1 for h2).
    assert 1 <= len(state.peers) <= (4 if negotiated == "http/1.1" else 1)


def test_a_second_credential_set_of_an_http1_origin_does_not_probe_again():
    state = FCMLike()
    with aiohttp_fcm(state) as origin:
        adapter = FCMAdapter(endpoint=origin, timeout=5)
        try:
            first = fcm_credentials(origin)
            assert adapter.send_batch(first, [_message(_token())])[0].ok
            second = type(first)(key="another", values=first.values)
            assert adapter.send_batch(second, [_message(_token())])[0].ok
            pools = [client.pool for client in adapter._clients.values()]
        finally:
            adapter.close()
    assert [pool.protocol for pool in pools] == ["http/1.1", "http/1.1"]
    assert [pool.http2.has_connection for pool in pools] == [False, False]
    assert adapter._protocols == {origin: "http/1.1"}


class _AnswersNothing(asyncio.Protocol):
    """HTTP/1.1 only: says 505 to the HTTP/2 preface, reads a request, then closes without
    an answer (it may have processed it)."""

    requests = 0

    def connection_made(self, transport):
        self.transport = transport
        self.data = b""

    def data_received(self, data):
        self.data += data
        if self.data.startswith(b"PRI * HTTP/2.0"):
            self.transport.write(b"HTTP/1.1 505 HTTP Version Not Supported\r\n\r\n")
            self.transport.close()
        elif b"\r\n\r\n" in self.data:
            type(self).requests += 1
            self.transport.close()


@contextlib.contextmanager
def _asyncio_server(factory):
    from tests.adapters.servers import _loop_thread, _run

    with _loop_thread() as loop:
        server = _run(loop, loop.create_server(factory, "127.0.0.1", 0))
        try:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            loop.call_soon_threadsafe(server.close)


def test_a_request_the_server_may_have_processed_is_not_sent_again():
    state = FCMLike()
    _AnswersNothing.requests = 0
    with aiohttp_fcm(state) as token_origin, _asyncio_server(_AnswersNothing) as origin:
        adapter = FCMAdapter(endpoint=origin, timeout=5)
        try:
            credentials = fcm_credentials(token_origin)  # the token comes from its token_uri
            [result] = adapter.send_batch(credentials, [_message(_token())])
            [client] = adapter._clients.values()
            after_failure = client.pool.protocol
        finally:
            adapter.close()
    assert (result.ok, result.error_code, result.permanent) == (False, "network_error", False)
    assert "ServerDisconnected" in result.error_message
    assert _AnswersNothing.requests == 1
    assert state.token_requests == 1
    assert after_failure is None  # the next request asks the server again


def test_an_http2_only_pool_refuses_an_http1_server_clearly():
    """APNs' pool offers only h2: an HTTP/1.1 server is a clear error, not a fallback."""
    state = FCMLike()
    with aiohttp_fcm(state) as origin:

        async def send():
            pool = HTTP2Pool(origin, timeout=5)
            try:
                return await pool.request([(b":method", b"POST"), (b":path", b"/")], b"")
            finally:
                pool.close()

        with pytest.raises(NotHTTP2Error, match="not an HTTP/2 server"):
            asyncio.run(send())
    assert state.sends == []
