"""What only a real server shows: a chunked request body (no Content-Length) reaches the API,
and over-long request lines and headers are answered in the error shape. gunicorn runs on
loopback with the project's gunicorn.conf.py; requests are written raw over a socket."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest
from django.conf import settings

from bench.servers import free_port
from messaging.models import Subscription
from tests.conftest import apns_token, application_with_keys
from tests.e2e.processes import Process, start_web


@pytest.fixture
def web(transactional_db, tmp_path):
    db = settings.DATABASES["default"]
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "TOKEN_HMAC_KEY": settings.TOKEN_HMAC_KEY,
    }
    process = Process(
        "web",
        [sys.executable, "-m", "gunicorn", "signal_project.wsgi:application",
         "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "2"],
        env, tmp_path,
    )  # fmt: skip
    process.url = f"http://127.0.0.1:{port}"
    process.port = port
    start_web(process)
    yield process
    process.stop()


def exchange(web, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Writes `raw` (a whole HTTP/1.1 request) and reads the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=20) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    if headers.get("transfer-encoding") == "chunked":
        body = dechunked(body)
    return int(status_line.split()[1]), headers, body


def dechunked(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


def chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def request(path: str, *, key: str = "", headers: str = "", method: str = "GET") -> bytes:
    auth = f"X-API-Key: {key}\r\n" if key else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{headers}Connection: close\r\n\r\n"
    ).encode()


def assert_error_shape(status_headers_body, status: int, code: str) -> dict:
    got, headers, body = status_headers_body
    assert got == status, (got, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"], error
    return error


def test_a_chunked_body_is_read(web):
    app = application_with_keys()
    body = json.dumps({"type": "iOSPush", "token": apns_token(1), "tags": {"plan": "gold"}})
    head = request(
        "/api/v1/subscriptions",
        key=app.server.raw,
        method="POST",
        headers="Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
    )

    status, _headers, answer = exchange(web, head + chunked(body.encode(), size=7))

    assert status == 201, answer[:300]
    assert json.loads(answer)["tags"] == {"plan": "gold"}
    assert Subscription.objects.get().tags == {"plan": "gold"}


def test_a_chunked_body_over_the_limit_is_413(web):
    app = application_with_keys()
    body = json.dumps({"type": "iOSPush", "token": apns_token(1), "tags": {"x": "y" * 2**20}})
    head = request(
        "/api/v1/subscriptions",
        key=app.server.raw,
        method="POST",
        headers="Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
    )

    answer = exchange(web, head + chunked(body.encode(), size=64 * 1024))

    assert_error_shape(answer, 413, "payload_too_large")
    assert not Subscription.objects.exists()


def test_a_long_query_string_is_414_in_the_error_shape(web):
    answer = exchange(web, request("/api/v1/subscriptions?q=" + "a" * 5_000))

    assert_error_shape(answer, 414, "uri_too_long")


def test_a_request_line_gunicorn_refuses_is_414_in_the_error_shape(web):
    answer = exchange(web, request("/api/v1/subscriptions?q=" + "a" * 9_000))

    assert_error_shape(answer, 414, "uri_too_long")


def test_a_header_gunicorn_refuses_is_431_in_the_error_shape(web):
    answer = exchange(web, request("/api/v1/subscriptions", headers=f"X-Big: {'b' * 9_000}\r\n"))

    assert_error_shape(answer, 431, "request_header_fields_too_large")
