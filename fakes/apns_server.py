"""A fake APNs: HTTP/2 over TLS on loopback that checks requests the way Apple does.

A hand-written HTTP/2 layer (`http2.py`) on an asyncio protocol, not `h2` or a framework, so
that a benchmark's thousands of requests per second cost little CPU. Provider JWTs are verified
once and cached by their raw header; only the `iat` expiry is checked per request.
Clients that negotiate `http/1.1` by ALPN get `GET /__stats` and `POST /__reset` instead.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import string
import time
import uuid

import jwt

from fakes.http1 import HTTP1Protocol
from fakes.http2 import HTTP2ServerProtocol, encode_literal, encode_status
from fakes.state import CA_FILE, SERVER_CERT_FILE, FakeState, load_apns_public_key
from fakes.stats import PEER, Stats, peer_of

# Device-token prefixes (hex, as real tokens are) that provoke a given answer.
TOKEN_PREFIXES: dict[str, str] = {
    "dead": "410 Unregistered (with timestamp)",
    "bad0": "400 BadDeviceToken",
    "f1a0": "flaky: the first 2 attempts per token get 503 ServiceUnavailable, Retry-After: 1",
    "5104": "slow: answers 200 after 2 seconds",
    "0413": "413 PayloadTooLarge",
    "0500": "500 InternalServerError, always",
    "0429": "429 TooManyRequests, Retry-After: 1",
}
FLAKY_FAILURES = 2
SLOW_SECONDS = 2.0
MAX_PAYLOAD_BYTES = 4096
PROVIDER_TOKEN_MAX_AGE = 3600
PUSH_TYPES = frozenset(
    [b"alert", b"background", b"location", b"voip", b"complication", b"fileprovider", b"mdm"]
    + [b"liveactivity", b"pushtotalk"]
)
_PRIORITIES = frozenset([b"1", b"5", b"10"])
_HEX = string.hexdigits.encode()
_JWT_CACHE_LIMIT = 10_000

# (status, reason or None, extra response headers)
Answer = tuple[int, str | None, tuple[tuple[bytes, bytes], ...]]

_RETRY_AFTER = ((b"retry-after", b"1"),)
_SUCCESS: tuple[Answer, float] = ((200, None, ()), 0.0)
_METHOD_NOT_ALLOWED: tuple[Answer, float] = ((405, "MethodNotAllowed", ()), 0.0)
_BAD_PATH: tuple[Answer, float] = ((404, "BadPath", ()), 0.0)
_MISSING_DEVICE_TOKEN: tuple[Answer, float] = ((400, "MissingDeviceToken", ()), 0.0)
_MISSING_TOPIC: tuple[Answer, float] = ((400, "MissingTopic", ()), 0.0)
_NOT_FOR_TOPIC: tuple[Answer, float] = ((400, "DeviceTokenNotForTopic", ()), 0.0)
_INVALID_PUSH_TYPE: tuple[Answer, float] = ((400, "InvalidPushType", ()), 0.0)
_BAD_PRIORITY: tuple[Answer, float] = ((400, "BadPriority", ()), 0.0)
_BAD_EXPIRATION: tuple[Answer, float] = ((400, "BadExpirationDate", ()), 0.0)
_BAD_COLLAPSE_ID: tuple[Answer, float] = ((400, "BadCollapseId", ()), 0.0)
_BAD_DEVICE_TOKEN: tuple[Answer, float] = ((400, "BadDeviceToken", ()), 0.0)
_PAYLOAD_EMPTY: tuple[Answer, float] = ((400, "PayloadEmpty", ()), 0.0)
_PAYLOAD_TOO_LARGE: tuple[Answer, float] = ((413, "PayloadTooLarge", ()), 0.0)


class FakeAPNs:
    """The request checks, the token-prefix behaviours and the counters of the fake APNs."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.stats = Stats(tuple(TOKEN_PREFIXES))
        self._public_key = load_apns_public_key(state)
        self._topic = state.topic.encode("latin-1")
        # raw authorization header -> (error, expiry): each distinct token is verified once.
        self._verified: dict[bytes, tuple[str | None, float]] = {}
        self._flaky_attempts: dict[str, int] = {}

    def reset(self) -> None:
        self.stats.reset()
        self._flaky_attempts.clear()

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.state.path(SERVER_CERT_FILE))
        # Certificate-based provider auth: a client certificate from our CA is optional.
        context.load_verify_locations(self.state.path(CA_FILE))
        context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context

    def protocol(self) -> asyncio.BaseProtocol:
        return _Connection(self)

    def _provider_token_error(self, authorization: bytes | None) -> str | None:
        cached = self._verified.get(authorization)
        if cached is None:
            cached = self._verify_header(authorization)
            if len(self._verified) >= _JWT_CACHE_LIMIT:
                self._verified.clear()
            self._verified[authorization] = cached
        error, expiry = cached
        if error:
            return error
        if time.time() > expiry:  # iat more than PROVIDER_TOKEN_MAX_AGE ago
            return "ExpiredProviderToken"
        return None

    def _verify_header(self, authorization: bytes | None) -> tuple[str | None, float]:
        if not authorization:
            return "MissingProviderToken", 0
        scheme, _, raw = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not raw:
            return "MissingProviderToken", 0
        error, issued_at = self._verify(raw)
        return error, issued_at + PROVIDER_TOKEN_MAX_AGE

    def _verify(self, raw: str) -> tuple[str | None, int]:
        try:
            header = jwt.get_unverified_header(raw)
            if header.get("alg") != "ES256" or header.get("kid") != self.state.key_id:
                return "InvalidProviderToken", 0
            claims = jwt.decode(
                raw,
                self._public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError:
            return "InvalidProviderToken", 0
        if claims["iss"] != self.state.team_id or not isinstance(claims["iat"], int):
            return "InvalidProviderToken", 0
        return None, claims["iat"]

    def answer(
        self, headers: dict[bytes, bytes], body: bytes, *, client_certificate: bool
    ) -> tuple[Answer, float]:
        """Check one request; return the answer and how long to wait before sending it."""
        path = headers.get(b":path", b"")
        token = path[10:] if path.startswith(b"/3/device/") else b""
        prefix = self.stats.prefix_of(token.decode("latin-1"))
        answer, delay = self._check(headers, body, token, prefix, client_certificate)
        self.stats.record(answer[0], answer[1], prefix)
        if self.stats.tracking and answer[0] == 200:
            self.stats.track(token.decode("latin-1"))
        return answer, delay

    def _check(self, headers, body, token, prefix, client_certificate) -> tuple[Answer, float]:
        if headers.get(b":method") != b"POST":
            return _METHOD_NOT_ALLOWED
        if not headers.get(b":path", b"").startswith(b"/3/device/"):
            return _BAD_PATH
        if not token:
            return _MISSING_DEVICE_TOKEN
        if not client_certificate:
            error = self._provider_token_error(headers.get(b"authorization"))
            if error:
                return (403, error, ()), 0.0
        topic = headers.get(b"apns-topic")
        if not topic and not client_certificate:
            return _MISSING_TOPIC
        if topic and topic != self._topic:
            return _NOT_FOR_TOPIC
        push_type = headers.get(b"apns-push-type", b"alert")
        if push_type not in PUSH_TYPES:
            return _INVALID_PUSH_TYPE
        priority = headers.get(b"apns-priority", b"10")
        if priority not in _PRIORITIES or (push_type == b"background" and priority != b"5"):
            return _BAD_PRIORITY
        expiration = headers.get(b"apns-expiration")
        if expiration is not None and not expiration.isdigit():
            return _BAD_EXPIRATION
        if len(headers.get(b"apns-collapse-id", b"")) > 64:
            return _BAD_COLLAPSE_ID
        if token.translate(None, _HEX) or len(token) % 2:
            return _BAD_DEVICE_TOKEN
        if not body:
            return _PAYLOAD_EMPTY
        if len(body) > MAX_PAYLOAD_BYTES:
            return _PAYLOAD_TOO_LARGE
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return _PAYLOAD_EMPTY
        if prefix == "other":
            return _SUCCESS
        return self._behaviour(token.decode("latin-1"), prefix)

    def _behaviour(self, token: str, prefix: str) -> tuple[Answer, float]:
        if prefix == "dead":
            return (410, "Unregistered", ()), 0.0
        if prefix == "bad0":
            return _BAD_DEVICE_TOKEN
        if prefix == "f1a0":
            attempts = self._flaky_attempts.get(token, 0) + 1
            self._flaky_attempts[token] = attempts
            if attempts <= FLAKY_FAILURES:
                return (503, "ServiceUnavailable", _RETRY_AFTER), 0.0
        if prefix == "5104":
            return (200, None, ()), SLOW_SECONDS
        if prefix == "0413":
            return _PAYLOAD_TOO_LARGE
        if prefix == "0500":
            return (500, "InternalServerError", ()), 0.0
        if prefix == "0429":
            return (429, "TooManyRequests", _RETRY_AFTER), 0.0
        return _SUCCESS

    def admin(self, method: str, path: str, headers, body: bytes):
        """The HTTP/1.1 side: stats and reset."""
        if method == "GET" and path == "/__stats":
            return 200, [], json.dumps(self.stats.snapshot()).encode()
        if method == "POST" and path == "/__reset":
            self.reset()
            return 200, [], b"{}"
        return 404, [], b""


class _Connection(HTTP2ServerProtocol):
    """One client connection: HTTP/2 unless ALPN chose http/1.1 (then the admin endpoints)."""

    max_body = MAX_PAYLOAD_BYTES  # a longer body is answered 413 whatever its content

    def __init__(self, app: FakeAPNs) -> None:
        super().__init__()
        self._app = app
        self._http1: HTTP1Protocol | None = None
        self._client_certificate = False
        self._peer = ""

    def connection_made(self, transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "http/1.1":
            self._http1 = HTTP1Protocol(self._app.admin)
            self._http1.connection_made(transport)
            return
        self._client_certificate = bool(ssl_object and ssl_object.getpeercert())
        self._peer = peer_of(transport)
        super().connection_made(transport)

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
        else:
            super().buffer_updated(nbytes)

    def request_received(self, stream_id: int, headers: dict[bytes, bytes], body: bytes) -> None:
        path = headers.get(b":path")
        if path == b"/__stats":
            stats = json.dumps(self._app.stats.snapshot()).encode()
            self.send_response(stream_id, _STATS_BLOCK, stats)
            return
        if path == b"/__reset":
            self._app.reset()
            self.send_response(stream_id, _EMPTY_OK_BLOCK, b"{}")
            return
        PEER.set(self._peer)
        answer, delay = self._app.answer(headers, body, client_certificate=self._client_certificate)
        apns_id = headers.get(b"apns-id") or str(uuid.uuid4()).encode()
        block, payload = _encode(answer, apns_id)
        if delay:
            asyncio.get_running_loop().call_later(
                delay, self._send_later, stream_id, block, payload
            )
        else:
            self.send_response(stream_id, block, payload)

    def _send_later(self, stream_id: int, block: bytes, payload: bytes) -> None:
        # False when the client reset the stream (gave up) or the connection closed meanwhile.
        if self.send_response(stream_id, block, payload):
            self.flush()


_STATS_BLOCK = encode_status(200) + encode_literal(b"content-type", b"application/json")
_EMPTY_OK_BLOCK = encode_status(200)
_answer_parts: dict[tuple, tuple[bytes, bytes, bytes]] = {}


def _encode(answer: Answer, apns_id: bytes) -> tuple[bytes, bytes]:
    """The response's HPACK block (:status, apns-id, extra headers, content-type) and body."""
    status, reason, extra = answer
    key = (status, reason, tuple(extra))
    parts = _answer_parts.get(key)
    if parts is None:
        tail = b"".join(encode_literal(name, value) for name, value in extra)
        body = b""
        if reason:
            body = json.dumps({"reason": reason}).encode()
            tail += encode_literal(b"content-type", b"application/json")
        parts = _answer_parts[key] = (encode_status(status), tail, body)
    head, tail, body = parts
    if status == 410:
        body = json.dumps({"reason": reason, "timestamp": int(time.time() * 1000)}).encode()
    return head + encode_literal(b"apns-id", apns_id) + tail, body


async def serve_apns(app: FakeAPNs, host: str, port: int) -> asyncio.Server:
    """Listen for TLS connections; `port` 0 picks a free one."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(app.protocol, host, port, ssl=app.ssl_context())
