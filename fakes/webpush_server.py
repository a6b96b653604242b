"""A fake Web Push service (RFC 8030) on loopback: cleartext HTTP/1.1 and HTTP/2 (h2c with
prior knowledge, as `WebPushAdapter` connects: the browsers' push services speak HTTP/2) on
one port (`dual.py`).

It plays both sides a real push service connects: the browser's, which subscribes and keeps
the keys to decrypt, and the push service's, which checks each push request as Mozilla's
autopush and FCM do and answers with their statuses and autopush's JSON error body
(`{"code", "errno", "error", "message", "more_info"}`).

`POST /__subscribe` makes a subscription as a browser's `pushManager.subscribe()` would: the
fake generates the user agent's P-256 key pair and 16-octet auth secret, keeps the private
half, and answers `{"endpoint": "http://127.0.0.1:PORT/push/<id>", "keys": {"p256dh",
"auth"}}`. Its JSON body may give `prefix` (the id then starts `<prefix>-`, see below),
`application_server_key` (base64url: pushes must then carry that VAPID key, as the
subscription is bound to it, else 403) and `count` (up to 10,000: then the answer is
`{"subscriptions": [...]}`).

`POST /push/<id>` checks, in this order: the id exists (404); the prefix's answer for `gone`,
`missing`, `flaky`, `busy` and `err500`; `Authorization: vapid t=<JWT>, k=<key>` with an
ES256 JWT that verifies with `k`, whose `aud` is the fake's origin, whose `exp` is in the
future and at most 24 hours ahead, and that has a `sub` (`mailto:` or `https:`), else 401; `k`
equal to the subscription's application server key when it has one, else 403; a `TTL` header
of a non-negative integer (400); `Urgency` one of very-low, low, normal, high and `Topic` at
most 32 base64url characters, when present (400); a body of at most 4,096 octets (413);
`Content-Encoding: aes128gcm` (400); a body that decrypts with the subscription's keys
(RFC 8291; 400). Then it stores the decrypted payload (parsed JSON, else text) with the TTL,
Urgency and Topic and the JWT, at most 100 per subscription (a new message with the Topic of
a stored one replaces it, as a push service replaces an undelivered message), and answers 201
with `Location: <origin>/m/<message id>`. Verified JWTs are remembered, so a reused token
costs no signature check (`vapid_verifications` in the counters counts the checks).

Subscription id prefixes (`POST /__subscribe {"prefix": ...}`):

| Prefix | Answer |
|---|---|
| `gone` | 410 Gone (the subscription expired or was unsubscribed) |
| `missing` | 404 Not Found |
| `flaky<N>` | 503 with `Retry-After: 1` for the first N attempts (2 without N), then as usual |
| `busy` | 429 with `Retry-After: 1` |
| `err500` | 500, always |
| `slow` | the usual answer after 2 seconds |

Admin: `GET /__stats` (`requests`, `by_status`, `by_reason`, `by_prefix`,
`vapid_verifications`, `subscriptions`), `POST /__reset` (counters, flaky attempts and stored
messages; subscriptions stay), `GET /__messages?endpoint=URL` (the stored messages of one
subscription, oldest first: `{"id", "payload", "ttl", "urgency", "topic", "vapid_token",
"received_at"}`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fakes.dual import DualProtocolConnection
from fakes.http1 import Response
from fakes.stats import Stats

PREFIXES: dict[str, str] = {
    "gone": "410 Gone",
    "missing": "404 Not Found",
    "flaky": "flaky<N>: 503 with Retry-After: 1 for N attempts (default 2), then as usual",
    "busy": "429 Too Many Requests, Retry-After: 1",
    "err500": "500 Internal Server Error, always",
    "slow": "the usual answer after 2 seconds",
}
FLAKY_FAILURES = 2
SLOW_SECONDS = 2.0
MAX_BODY = 4096
MAX_VAPID_SECONDS = 24 * 3600
MESSAGES_PER_SUBSCRIPTION = 100
MAX_SUBSCRIPTIONS = 200_000
MAX_SUBSCRIBE_COUNT = 10_000
MORE_INFO = "https://autopush.readthedocs.io/en/latest/http.html#error-codes"
_URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_PREFIX = re.compile(r"[a-z0-9]{0,32}")
_FLAKY = re.compile(r"flaky(\d*)-")
_RETRY_AFTER = (("Retry-After", "1"),)
_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(value: str) -> bytes:
    value = value.strip().rstrip("=")
    return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)


def _error(
    status: int, errno: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    body = {
        "code": status,
        "errno": errno,
        "error": _PHRASES[status],
        "message": message,
        "more_info": MORE_INFO,
    }
    return status, headers, json.dumps(body).encode()


@dataclass
class _Subscription:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    p256dh: bytes
    application_server_key: bytes | None
    attempts: int = 0
    messages: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=MESSAGES_PER_SUBSCRIPTION)
    )


class FakeWebPush:
    """Subscriptions, the push endpoint's checks, the prefix behaviours, counters."""

    def __init__(self) -> None:
        self.origin = ""  # http://127.0.0.1:PORT, set once the server listens
        self.stats = Stats(tuple(PREFIXES))
        self._subscriptions: collections.OrderedDict[str, _Subscription] = collections.OrderedDict()
        self._verified: dict[str, tuple[bytes, float]] = {}  # JWT -> (key, exp)
        self._message_ids = itertools.count(secrets.randbits(48) << 32)

    def reset(self) -> None:
        self.stats.reset()
        self._verified.clear()
        for subscription in self._subscriptions.values():
            subscription.attempts = 0
            subscription.messages.clear()

    def protocol(self) -> asyncio.BaseProtocol:
        return DualProtocolConnection(self.handle, with_query=True)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes):
        path, _, query = target.partition("?")
        if method == "POST":
            if path.startswith("/push/"):
                return self._push(path[6:], headers, body)
            if path == "/__subscribe":
                return self._subscribe(body)
            if path == "/__reset":
                self.reset()
                return 200, (), b"{}"
        elif method == "GET":
            if path == "/__stats":
                snapshot = self.stats.snapshot()
                snapshot["subscriptions"] = len(self._subscriptions)
                return 200, (), json.dumps(snapshot).encode()
            if path == "/__messages":
                return self._messages(query)
        return _error(404, 102, f"No route for {method} {path}")

    # -- subscriptions --

    def _subscribe(self, body: bytes) -> Response:
        try:
            options = json.loads(body) if body.strip() else {}
            if not isinstance(options, dict):
                raise ValueError("not an object")
            prefix = str(options.get("prefix") or "")
            count = int(options.get("count") or 0)
            key = options.get("application_server_key")
            server_key = _b64url_decode(key) if key else None
        except (ValueError, TypeError, binascii.Error) as exc:
            return 400, (), json.dumps({"error": f"bad subscribe request: {exc}"}).encode()
        if not _PREFIX.fullmatch(prefix) or not 0 <= count <= MAX_SUBSCRIBE_COUNT:
            return 400, (), b'{"error": "prefix: [a-z0-9]{0,32}; count: 0-10000"}'
        if server_key is not None and len(server_key) != 65:
            return 400, (), b'{"error": "application_server_key must be a 65-octet point"}'
        if count:
            made = [self._new_subscription(prefix, server_key) for _ in range(count)]
            return 200, (), json.dumps({"subscriptions": made}).encode()
        return 200, (), json.dumps(self._new_subscription(prefix, server_key)).encode()

    def _new_subscription(self, prefix: str, server_key: bytes | None) -> dict:
        private_key = ec.generate_private_key(ec.SECP256R1())
        p256dh = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        auth = secrets.token_bytes(16)
        name = secrets.token_urlsafe(16)
        subscription_id = f"{prefix}-{name}" if prefix else name
        while len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
            self._subscriptions.popitem(last=False)
        self._subscriptions[subscription_id] = _Subscription(private_key, auth, p256dh, server_key)
        return {
            "endpoint": f"{self.origin}/push/{subscription_id}",
            "keys": {"p256dh": _b64url(p256dh), "auth": _b64url(auth)},
        }

    def _messages(self, query: str) -> Response:
        endpoint = (parse_qs(query).get("endpoint") or [""])[0]
        subscription = self._subscriptions.get(urlsplit(endpoint).path.rpartition("/push/")[2])
        if subscription is None or not endpoint.startswith(self.origin + "/push/"):
            return _error(404, 102, "No such subscription")
        return 200, (), json.dumps(list(subscription.messages)).encode()

    # -- pushes --

    def _push(self, subscription_id: str, headers: dict[str, str], body: bytes):
        prefix = self.stats.prefix_of(subscription_id)
        answer, reason = self._check(subscription_id, prefix, headers, body)
        self.stats.record(answer[0], reason, prefix)
        if prefix == "slow":
            return _after(SLOW_SECONDS, answer)
        return answer

    def _check(
        self, subscription_id: str, prefix: str, headers: dict[str, str], body: bytes
    ) -> tuple[Response, str | None]:
        """The answer to a push request, and the reason the counters file it under."""
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None:
            return _error(404, 102, "Subscription not found"), "unknown_subscription"
        if prefix == "gone":
            return _error(410, 106, "Subscription no longer valid"), "gone"
        if prefix == "missing":
            return _error(404, 102, "Subscription not found"), "missing"
        if prefix == "busy":
            return _error(429, 999, "Too many requests", _RETRY_AFTER), "busy"
        if prefix == "err500":
            return _error(500, 999, "Internal server error"), "err500"
        if prefix == "flaky":
            match = _FLAKY.match(subscription_id)
            failures = int(match.group(1)) if match and match.group(1) else FLAKY_FAILURES
            subscription.attempts += 1
            if subscription.attempts <= failures:
                return _error(503, 202, "Service unavailable", _RETRY_AFTER), "flaky"

        vapid = self._vapid(headers.get("authorization", ""))
        if isinstance(vapid, str):
            return _error(401, 109, vapid), "vapid_invalid"
        token, key = vapid
        server_key = subscription.application_server_key
        if server_key is not None and key != server_key:
            return (
                _error(
                    403,
                    109,
                    "The VAPID key (k) does not match the applicationServerKey the "
                    "subscription was created with",
                ),
                "vapid_key_mismatch",
            )
        ttl = headers.get("ttl", "")
        if not (ttl.isascii() and ttl.isdigit()):
            return _error(400, 111, "Missing or invalid TTL header"), "bad_ttl"
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in _URGENCIES:
            return _error(400, 111, f"Invalid Urgency header: {urgency[:40]}"), "bad_urgency"
        topic = headers.get("topic")
        if topic is not None and not _TOPIC.fullmatch(topic):
            return _error(400, 113, "Topic must be at most 32 base64url characters"), "bad_topic"
        if len(body) > MAX_BODY:
            return _error(413, 104, f"Payload of {len(body)} octets exceeds 4096"), "too_large"
        payload: object = None
        if body:
            if headers.get("content-encoding", "").lower() != "aes128gcm":
                return _error(400, 110, "Content-Encoding must be aes128gcm"), "bad_encoding"
            payload = self._decrypt(subscription, body)
            if payload is None:
                return _error(400, 110, "The payload does not decrypt"), "bad_encryption"
        message_id = f"{next(self._message_ids):016x}"
        record = {
            "id": message_id,
            "payload": payload,
            "ttl": int(ttl),
            "urgency": urgency,
            "topic": topic,
            "vapid_token": token,
            "received_at": time.time(),
        }
        messages = subscription.messages
        if topic is not None:
            for stored in [m for m in messages if m["topic"] == topic]:
                messages.remove(stored)
        messages.append(record)
        headers_out = (("Location", f"{self.origin}/m/{message_id}"), ("TTL", ttl))
        return (201, headers_out, b""), None

    def _vapid(self, authorization: str) -> tuple[str, bytes] | str:
        """The JWT and VAPID key of a valid `vapid t=..., k=...` header, else why not."""
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "vapid":
            return "Authorization must use the vapid scheme (RFC 8292)"
        params = {}
        for item in rest.split(","):
            name, _, value = item.strip().partition("=")
            params[name.strip().lower()] = value.strip()
        token, key_b64 = params.get("t", ""), params.get("k", "")
        if not token or not key_b64:
            return "vapid Authorization needs t= and k="
        try:
            key = _b64url_decode(key_b64)
        except (ValueError, binascii.Error):
            return "k is not base64url"
        now = time.time()
        verified = self._verified.get(token)
        if verified is not None:
            if verified[0] != key:
                return "the JWT does not verify with k"
            if verified[1] <= now:
                return "the JWT has expired"
            return token, key
        self.stats.extra["vapid_verifications"] += 1
        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
        except ValueError:
            return "k is not a P-256 public key"
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"invalid VAPID JWT: {exc}"
        if claims["exp"] > now + MAX_VAPID_SECONDS:
            return "the JWT's exp is more than 24 hours ahead"
        sub = str(claims["sub"])
        if not (sub.startswith("mailto:") or sub.startswith("https:")):
            return "the JWT's sub must be a mailto: or https: URI"
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (key, float(claims["exp"]))
        return token, key

    @staticmethod
    def _decrypt(subscription: _Subscription, body: bytes) -> object:
        """The decrypted payload (parsed JSON, else text), or None when it does not decrypt."""
        if len(body) < 21 or body[20] != 65:  # RFC 8291: keyid is the sender's 65-octet key
            return None
        try:
            plain = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth,
                version="aes128gcm",
            )
        except (http_ece.ECEException, ValueError):
            return None
        try:
            return json.loads(plain)
        except ValueError:
            return plain.decode("utf-8", "replace")


async def _after(seconds: float, response: Response) -> Response:
    await asyncio.sleep(seconds)
    return response


async def serve_webpush(app: FakeWebPush, host: str, port: int) -> asyncio.Server:
    """Listen for cleartext HTTP/1.1 and h2c; `port` 0 picks a free one. Sets `app.origin`."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(app.protocol, host, port)
    app.origin = f"http://{host}:{server.sockets[0].getsockname()[1]}"
    return server
