"""The fakes' HTTP/1.1 protocol, counters and event loop, in process."""

import asyncio
import json
import socket
import time

from fakes import loop as fake_loop
from fakes.fcm_server import FakeFCM
from fakes.http1 import HTTP1Protocol
from fakes.state import ensure_state
from fakes.stats import Stats


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


def _feed(protocol, data: bytes) -> None:
    buffer = protocol.get_buffer(len(data))
    buffer[: len(data)] = data
    protocol.buffer_updated(len(data))


def _echo(method, path, headers, body):
    answer = {"m": method, "h": headers, "b": body.decode()}
    return 200, (("X-Path", path),), json.dumps(answer).encode()


def test_requests_split_and_pipelined_are_answered_in_order():
    transport, protocol = (
        _Transport(),
        HTTP1Protocol(_echo),
    )
    protocol.connection_made(transport)
    one = b"POST /a?q=1 HTTP/1.1\r\ncontent-LENGTH:  2 \r\nX-Key:\tv \r\n\r\nhi"
    two = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    for i in range(0, len(one), 5):  # cut anywhere
        _feed(protocol, one[i : i + 5])
    _feed(protocol, two + two)
    answers = bytes(transport.data).split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 3
    head, _, body = answers[0].partition(b"\r\n\r\n")
    assert b"X-Path: /a" in head and b"Content-Length: %d" % len(body) in head
    assert json.loads(body) == {"m": "POST", "h": {"content-length": "2", "x-key": "v"}, "b": "hi"}
    assert json.loads(answers[2].partition(b"\r\n\r\n")[2])["m"] == "GET"


def test_bad_requests_close_the_connection():
    for raw, status in [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"413"),
    ]:
        transport, protocol = _Transport(), HTTP1Protocol(lambda *a: (200, (), b""))
        protocol.connection_made(transport)
        _feed(protocol, raw)
        assert transport.data.startswith(b"HTTP/1.1 " + status), raw
        assert b"Connection: close" in transport.data
        assert transport.closed


def test_fcm_send_in_process(fakes):
    app = FakeFCM(ensure_state(fakes.state_dir))
    app._access_tokens["fake.t"] = time.time() + 60
    transport = _Transport()
    protocol = app.protocol()
    protocol.connection_made(transport)
    body = json.dumps({"message": {"token": "tok-1", "android": {"ttl": "60s"}}}).encode()
    head = b"POST /v1/projects/signal-fake/messages:send HTTP/1.1\r\nAuthorization: Bearer fake.t"
    _feed(protocol, head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    _feed(protocol, head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    answers = bytes(transport.data).split(b"HTTP/1.1 200 OK\r\n")[1:]
    names = [json.loads(a.partition(b"\r\n\r\n")[2])["name"] for a in answers]
    assert len(names) == 2 and names[0] != names[1]
    assert all(n.startswith("projects/signal-fake/messages/") and len(n) == 62 for n in names)
    assert app.stats.snapshot()["by_status"] == {"200": 2}


def test_stats_prefixes_and_snapshot():
    stats = Stats(("dead", "badtoken", "badarg"))
    assert [stats.prefix_of(t) for t in ("deadbeef", "badargs", "bad", "")] == [
        "dead",
        "badarg",
        "other",
        "other",
    ]
    overlapping = Stats(("ab", "abc"))  # first declared wins, as before
    assert overlapping.prefix_of("abcd") == "ab"
    stats.record(200, None, "other")
    stats.record(410, "Unregistered", "dead")
    stats.record(410, "Unregistered", "dead")
    stats.extra["token_requests"] += 1
    assert stats.snapshot() == {
        "requests": 3,
        "by_status": {"200": 1, "410": 2},
        "by_reason": {"Success": 1, "Unregistered": 2},
        "by_prefix": {"other": 1, "dead": 2},
        "token_requests": 1,
    }
    stats.reset()
    assert stats.snapshot()["requests"] == 0


def test_the_throttled_loop_answers_at_once_when_idle_and_batches_when_busy():
    loop = fake_loop.new_event_loop(0.05)
    try:

        async def main():
            reader_sock, writer_sock = socket.socketpair()
            wakeups = []
            loop.add_reader(reader_sock, lambda: wakeups.append(reader_sock.recv(100)))
            started = time.monotonic()
            writer_sock.send(b"a")
            while not wakeups:
                await asyncio.sleep(0)
            first = time.monotonic() - started
            for _ in range(5):  # while busy, these pile up into one wake-up
                writer_sock.send(b"b")
            await asyncio.sleep(0.2)
            loop.remove_reader(reader_sock)
            reader_sock.close()
            writer_sock.close()
            return first, wakeups

        first, wakeups = loop.run_until_complete(main())
    finally:
        loop.close()
    assert first < 0.04
    assert wakeups == [b"a", b"bbbbb"]
