"""A fake APNs: HTTP/2 over TLS on loopback that checks requests the way Apple does.

Raw `h2` on an asyncio protocol, not a framework, so that a benchmark's thousands of requests
per second cost little CPU. Provider JWTs are verified once and cached by their raw string.
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
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded
from h2.exceptions import H2Error

from adapters.fakes import huffman
from adapters.fakes.http1 import HTTP1Protocol
from adapters.fakes.state import CA_FILE, SERVER_CERT_FILE, FakeState, load_apns_public_key
from adapters.fakes.stats import Stats

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
    ["alert", "background", "location", "voip", "complication", "fileprovider", "mdm"]
    + ["liveactivity", "pushtotalk"]
)
_HEX = frozenset(string.hexdigits)
_JWT_CACHE_LIMIT = 10_000

# (status, reason or None, extra response headers)
Answer = tuple[int, str | None, list[tuple[bytes, bytes]]]


class FakeAPNs:
    """The request checks, the token-prefix behaviours and the counters of the fake APNs."""

    def __init__(self, state: FakeState) -> None:
        huffman.install()
        self.state = state
        self.stats = Stats(tuple(TOKEN_PREFIXES))
        self._public_key = load_apns_public_key(state)
        self._verified: dict[str, tuple[str | None, int]] = {}  # raw JWT -> (error, iat)
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

    def protocol(self) -> asyncio.Protocol:
        return _Connection(self)

    def _provider_token_error(self, authorization: bytes | None) -> str | None:
        if not authorization:
            return "MissingProviderToken"
        scheme, _, raw = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not raw:
            return "MissingProviderToken"
        cached = self._verified.get(raw)
        if cached is None:
            cached = self._verify(raw)
            if len(self._verified) >= _JWT_CACHE_LIMIT:
                self._verified.clear()
            self._verified[raw] = cached
        error, issued_at = cached
        if error:
            return error
        if time.time() - issued_at > PROVIDER_TOKEN_MAX_AGE:
            return "ExpiredProviderToken"
        return None

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
        path = headers.get(b":path", b"").decode("latin-1")
        token = path[len("/3/device/") :] if path.startswith("/3/device/") else ""
        prefix = self.stats.prefix_of(token)
        answer, delay = self._check(headers, body, token, prefix, client_certificate)
        self.stats.record(answer[0], answer[1], prefix)
        return answer, delay

    def _check(self, headers, body, token, prefix, client_certificate) -> tuple[Answer, float]:
        if headers.get(b":method") != b"POST":
            return (405, "MethodNotAllowed", []), 0.0
        if not headers.get(b":path", b"").startswith(b"/3/device/"):
            return (404, "BadPath", []), 0.0
        if not token:
            return (400, "MissingDeviceToken", []), 0.0
        if not client_certificate:
            error = self._provider_token_error(headers.get(b"authorization"))
            if error:
                return (403, error, []), 0.0
        topic = headers.get(b"apns-topic")
        if not topic and not client_certificate:
            return (400, "MissingTopic", []), 0.0
        if topic and topic.decode("latin-1") != self.state.topic:
            return (400, "DeviceTokenNotForTopic", []), 0.0
        push_type = headers.get(b"apns-push-type", b"alert").decode("latin-1")
        if push_type not in PUSH_TYPES:
            return (400, "InvalidPushType", []), 0.0
        priority = headers.get(b"apns-priority", b"10")
        if priority not in (b"1", b"5", b"10") or (push_type == "background" and priority != b"5"):
            return (400, "BadPriority", []), 0.0
        expiration = headers.get(b"apns-expiration")
        if expiration is not None and not expiration.isdigit():
            return (400, "BadExpirationDate", []), 0.0
        if len(headers.get(b"apns-collapse-id", b"")) > 64:
            return (400, "BadCollapseId", []), 0.0
        if not set(token) <= _HEX or len(token) % 2:
            return (400, "BadDeviceToken", []), 0.0
        if not body:
            return (400, "PayloadEmpty", []), 0.0
        if len(body) > MAX_PAYLOAD_BYTES:
            return (413, "PayloadTooLarge", []), 0.0
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return (400, "PayloadEmpty", []), 0.0
        return self._behaviour(token, prefix)

    def _behaviour(self, token: str, prefix: str) -> tuple[Answer, float]:
        if prefix == "dead":
            return (410, "Unregistered", []), 0.0
        if prefix == "bad0":
            return (400, "BadDeviceToken", []), 0.0
        if prefix == "f1a0":
            attempts = self._flaky_attempts.get(token, 0) + 1
            self._flaky_attempts[token] = attempts
            if attempts <= FLAKY_FAILURES:
                return (503, "ServiceUnavailable", [(b"retry-after", b"1")]), 0.0
        if prefix == "5104":
            return (200, None, []), SLOW_SECONDS
        if prefix == "0413":
            return (413, "PayloadTooLarge", []), 0.0
        if prefix == "0500":
            return (500, "InternalServerError", []), 0.0
        if prefix == "0429":
            return (429, "TooManyRequests", [(b"retry-after", b"1")]), 0.0
        return (200, None, []), 0.0

    def admin(self, method: str, path: str, headers, body: bytes):
        """The HTTP/1.1 side: stats and reset."""
        if method == "GET" and path == "/__stats":
            return 200, [], json.dumps(self.stats.snapshot()).encode()
        if method == "POST" and path == "/__reset":
            self.reset()
            return 200, [], b"{}"
        return 404, [], b""


_H2_CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/2 unless ALPN chose http/1.1."""

    def __init__(self, app: FakeAPNs) -> None:
        self._app = app
        self._transport: asyncio.Transport | None = None
        self._http1: HTTP1Protocol | None = None
        self._streams: dict[int, tuple[dict[bytes, bytes], bytearray]] = {}
        self._client_certificate = False
        self._conn = H2Connection(config=_H2_CONFIG)

    def connection_made(self, transport) -> None:
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "http/1.1":
            self._http1 = HTTP1Protocol(self._app.admin)
            self._http1.connection_made(transport)
            return
        self._client_certificate = bool(ssl_object and ssl_object.getpeercert())
        self._conn.local_settings.max_concurrent_streams = 1000
        self._conn.initiate_connection()
        transport.write(self._conn.data_to_send())

    def connection_lost(self, exc) -> None:
        self._transport = None
        if self._http1 is not None:
            self._http1.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._http1 is not None:
            self._http1.data_received(data)
            return
        try:
            events = self._conn.receive_data(data)
        except H2Error:
            self._transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._streams[event.stream_id] = (dict(event.headers), bytearray())
                if event.stream_ended is not None:
                    self._respond(event.stream_id)
            elif isinstance(event, DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream[1].extend(event.data)
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                if event.stream_id in self._streams:
                    self._respond(event.stream_id)
            elif isinstance(event, ConnectionTerminated):
                self._transport.close()
                return
        self._flush()

    def _flush(self) -> None:
        if self._transport is not None:
            self._transport.write(self._conn.data_to_send())

    def _respond(self, stream_id: int) -> None:
        headers, body = self._streams.pop(stream_id)
        if headers.get(b":path") == b"/__stats":
            stats = json.dumps(self._app.stats.snapshot()).encode()
            self._send(stream_id, (200, None, [(b"content-type", b"application/json")]), stats)
            return
        if headers.get(b":path") == b"/__reset":
            self._app.reset()
            self._send(stream_id, (200, None, []), b"{}")
            return
        answer, delay = self._app.answer(
            headers, bytes(body), client_certificate=self._client_certificate
        )
        apns_id = headers.get(b"apns-id") or str(uuid.uuid4()).encode()
        answer = (answer[0], answer[1], [(b"apns-id", apns_id), *answer[2]])
        payload = b""
        if answer[1]:
            error = {"reason": answer[1]}
            if answer[0] == 410:
                error["timestamp"] = int(time.time() * 1000)
            payload = json.dumps(error).encode()
        if delay:
            asyncio.get_running_loop().call_later(
                delay, self._send_later, stream_id, answer, payload
            )
        else:
            self._send(stream_id, answer, payload)

    def _send_later(self, stream_id: int, answer: Answer, payload: bytes) -> None:
        if self._transport is None:
            return
        try:
            self._send(stream_id, answer, payload)
        except H2Error:
            return  # the client reset the stream meanwhile
        self._flush()

    def _send(self, stream_id: int, answer: Answer, payload: bytes) -> None:
        status, _, extra = answer
        headers = [(b":status", str(status).encode()), *extra]
        if payload:
            headers.append((b"content-type", b"application/json"))
            self._conn.send_headers(stream_id, headers)
            self._conn.send_data(stream_id, payload, end_stream=True)
        else:
            self._conn.send_headers(stream_id, headers, end_stream=True)


async def serve_apns(app: FakeAPNs, host: str, port: int) -> asyncio.Server:
    """Listen for TLS connections; `port` 0 picks a free one."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(app.protocol, host, port, ssl=app.ssl_context())
