"""Web Push adapter: RFC 8030 push requests, payloads encrypted `aes128gcm` (RFC 8291), the
application server identified by VAPID (RFC 8292).

A subscription is the browser's push endpoint URL (the message's `token`) and its keys
(`{"p256dh", "auth"}`, base64url). The endpoint is a URL a client handed us, so before every
send it is checked against `WEB_PUSH_ALLOWED_HOSTS` (`endpoint_problem`): an endpoint that is
no longer acceptable fails permanently and nothing is sent to it.

Each message's payload, `{"message_id", "title", "body", "data", "url", "icon"}` as JSON, is
encrypted by http_ece with a fresh ECDH key pair and salt (one record of 4,096 octets: push
services accept 4,096 octets of body, so at most 3,993 octets of JSON). The VAPID JWT (ES256,
`aud` the endpoint's origin, `exp` 12 hours ahead) is signed once per origin and credential
set and reused until an hour before it expires; signing per message would cost more than the
encryption. Requests go through `adapters.http_client.HTTPPool`, one per endpoint origin
(HTTP/2 where the push service speaks it, else HTTP/1.1; `HTTPS_PROXY` honoured), at most
`concurrency` at once per batch.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import ipaddress
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import SplitResult, urlsplit

import http_ece
import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.asyncio_adapter import AsyncBatchAdapter, ClosingLRU, timed_request
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult
from adapters.errors import (
    ErrorClass,
    classified,
    error_table,
    failure,
    local_failure,
    parse_retry_after,
)
from adapters.http_client import HTTPPool
from adapters.proxy import proxy_for

# --- Outcomes ---------------------------------------------------------------------------------

# (code, HTTP status, permanent, token_invalid, credential_rejected, meaning). Push services
# answer 201 Created; a 404 or 410 means the browser's subscription is gone for good.
_ROWS = [
    ("HTTP400", 400, True, False, False, "the push service found the request malformed"),
    ("HTTP401", 401, True, False, False, "the VAPID authorization is missing or invalid"),
    (
        "HTTP403",
        403,
        True,
        False,
        False,
        "VAPID key mismatch: the subscription was made with another applicationServerKey "
        "than this application's vapid_public_key",
    ),
    ("HTTP404", 404, True, True, False, "the subscription does not exist"),
    ("HTTP410", 410, True, True, False, "the subscription expired or was unsubscribed"),
    ("HTTP413", 413, True, False, False, "the push service refused the payload's size"),
    ("HTTP429", 429, False, False, False, "too many requests; wait for Retry-After"),
    ("HTTP500", 500, False, False, False, "push service internal error"),
    ("HTTP502", 502, False, False, False, "push service bad gateway"),
    ("HTTP503", 503, False, False, False, "push service unavailable"),
    ("HTTP504", 504, False, False, False, "push service gateway timeout"),
    # Found before sending: nothing went out.
    (
        "endpoint_not_allowed",
        None,
        True,
        False,
        False,
        "the endpoint is not a URL of an allowed push service; nothing was sent",
    ),
    (
        "subscription_keys_invalid",
        None,
        True,
        False,
        False,
        "the subscription's p256dh/auth keys are unusable; nothing was sent",
    ),
]
WEB_PUSH_ERRORS: dict[str, ErrorClass] = error_table("WebPush", _ROWS)

DEFAULT_TTL = 4 * 7 * 24 * 3600  # seconds; also the most a push service is asked to keep one
MAX_ENDPOINT_LENGTH = 2048
RECORD_SIZE = 4096
MAX_BODY = 4096  # octets of encrypted body every push service accepts (RFC 8030 7.2)
# Body = salt (16) + rs (4) + idlen (1) + keyid (65-octet public key) + plaintext + 1 + tag 16.
MAX_PLAINTEXT = MAX_BODY - (16 + 4 + 1 + 65) - 1 - 16
VAPID_TOKEN_SECONDS = 12 * 3600
VAPID_RENEW_SECONDS = 3600  # a token this close to its expiry is signed again
LOOPBACK = "127.0.0.1"

_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_UNSAFE = re.compile(r"[^\x21-\x7e]")  # spaces, controls, non-ASCII
_STATIC_HEADERS = (
    (b"content-encoding", b"aes128gcm"),
    (b"content-type", b"application/octet-stream"),
)


# --- Endpoint and keys checks -------------------------------------------------------------------


class _AllowedHosts:
    def __init__(self, names: frozenset[str], suffixes: tuple[str, ...]) -> None:
        self.names = names
        self.suffixes = suffixes  # each starting with "."
        # (scheme, authority) -> (problem, origin): the verdict on a host, once per host.
        self.verdict = functools.lru_cache(maxsize=4096)(self._verdict)

    def _verdict(self, scheme: str, netloc: str) -> tuple[str | None, str]:
        return _check_authority(SplitResult(scheme, netloc, "", "", ""), self)

    @classmethod
    def of(cls, entries: Sequence[str]) -> _AllowedHosts:
        names, suffixes = set(), []
        for entry in entries:
            entry = str(entry).strip().lower().rstrip(".")
            if len(entry) > 1 and entry.startswith("."):
                suffixes.append(entry)
            elif entry:
                names.add(entry)
        return cls(frozenset(names), tuple(suffixes))

    def allows(self, host: str) -> bool:
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)


def endpoint_problem(url: str, allowed_hosts: Sequence[str]) -> str | None:
    """Why a Web Push endpoint is not acceptable (a sentence), or None when it is.

    Acceptable: an absolute `https://` URL of at most 2,048 characters, without user info,
    whose host is an entry of `allowed_hosts` or a subdomain of a `.suffix` entry. IP
    addresses are refused, but for `127.0.0.1` when it is listed (development and tests), whose
    endpoints may also be `http://`."""
    return _check_endpoint(url, _AllowedHosts.of(allowed_hosts))[0]


def _check_endpoint(url: Any, allowed: _AllowedHosts) -> tuple[str | None, str, str]:
    """(problem, origin, path with query): the problem is None when the URL is acceptable."""
    if not isinstance(url, str) or not url:
        return "the endpoint is empty", "", ""
    if len(url) > MAX_ENDPOINT_LENGTH:
        return f"the endpoint is longer than {MAX_ENDPOINT_LENGTH:,} characters", "", ""
    if _UNSAFE.search(url):
        return "the endpoint contains spaces, control or non-ASCII characters", "", ""
    parts = urlsplit(url)
    problem, origin = allowed.verdict(parts.scheme, parts.netloc)
    if problem is not None:
        return problem, "", ""
    return None, origin, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _check_authority(parts: SplitResult, allowed: _AllowedHosts) -> tuple[str | None, str]:
    """(problem, origin) of a URL's scheme and authority."""
    if parts.scheme not in ("https", "http"):
        return "the endpoint must be an https:// URL", ""
    if "@" in parts.netloc:
        return "the endpoint must not carry a user name or password", ""
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "the endpoint names no host", ""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the endpoint's port is not a number from 1 to 65535", ""
    default_port = 443 if parts.scheme == "https" else 80
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None or parts.netloc.startswith("["):
        if host == LOOPBACK and LOOPBACK in allowed.names:
            return None, origin  # development and tests: https:// or http://
        if host == LOOPBACK:
            return f"{LOOPBACK} is not in WEB_PUSH_ALLOWED_HOSTS", ""
        if address is None or not address.is_global:
            return f"the endpoint names a private, loopback or reserved address ({host})", ""
        return f"the endpoint names an IP address ({host}), not a push service's host", ""
    if not _HOST_NAME.fullmatch(host) or len(host) > 253:
        return f"the endpoint's host is not a valid host name ({host[:100]})", ""
    if _NUMERIC_LABEL.fullmatch(host.rpartition(".")[2]):
        # 2130706433, 0x7f.1, 127.1: resolvers read these as IPv4 addresses.
        return f"the endpoint names an IP address in another notation ({host})", ""
    if parts.scheme != "https":
        return f"the endpoint must be an https:// URL (http:// only for {LOOPBACK})", ""
    if not allowed.allows(host):
        return f"{host} is not a push service host allowed by WEB_PUSH_ALLOWED_HOSTS", ""
    return None, origin


def _b64url_decode(value: Any) -> bytes:
    """base64url with or without padding (as browsers and web-push libraries write it)."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if not isinstance(value, str):
        raise ValueError("not a string")
    value = value.strip().rstrip("=")
    if len(value) % 4 == 1:
        raise ValueError("bad length")
    return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def keys_problem(keys: Any) -> str | None:
    """Why a subscription's `keys` are unusable (a sentence), or None: `p256dh` must be the
    base64url of a 65-octet uncompressed P-256 point on the curve, `auth` of 16 octets."""
    if not isinstance(keys, Mapping):
        return "keys must be an object with p256dh and auth"
    try:
        p256dh = _b64url_decode(keys.get("p256dh"))
    except ValueError:
        return "keys.p256dh is missing or not base64url"
    if len(p256dh) != 65 or p256dh[0] != 4:
        return "keys.p256dh must be a 65-octet uncompressed P-256 public key"
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        return "keys.p256dh is not a point on the P-256 curve"
    try:
        auth = _b64url_decode(keys.get("auth"))
    except ValueError:
        return "keys.auth is missing or not base64url"
    if len(auth) != 16:
        return "keys.auth must be 16 octets"
    return None


# --- VAPID keys ---------------------------------------------------------------------------------


def _public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    return _b64url(
        private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


def _load_private_key(value: Any) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from the base64url of its 32-octet scalar (or from PEM, as the
    `vapid` command of py-vapid writes it); ValueError when unusable."""
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(value.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the PEM key is not a P-256 key")
        return key
    raw = _b64url_decode(value)
    if len(raw) != 32:
        raise ValueError(f"the raw private key must be 32 octets, not {len(raw)}")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def generate_vapid_keys() -> dict[str, str]:
    """A new VAPID key pair: `vapid_private_key` (base64url of the 32-octet scalar) and
    `vapid_public_key` (base64url of the 65-octet point: a browser's applicationServerKey)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    scalar = private_key.private_numbers().private_value.to_bytes(32, "big")
    return {"vapid_private_key": _b64url(scalar), "vapid_public_key": _public_key_b64(private_key)}


def vapid_public_key_of(private_key_b64: str) -> str:
    """The applicationServerKey (base64url, 65-octet point) of a VAPID private key."""
    return _public_key_b64(_load_private_key(private_key_b64))


@dataclass
class _Vapid:
    """One credential set: its key, and the signed Authorization value per origin, kept
    until an hour before it expires (for endpoints of up to 1,024 hosts: WNS has one per
    region)."""

    private_key: ec.EllipticCurvePrivateKey
    public_key: str
    subject: str
    tokens: TTLCache = field(
        default_factory=lambda: TTLCache(
            1024, VAPID_TOKEN_SECONDS - VAPID_RENEW_SECONDS, timer=time.time
        )
    )  # origin -> Authorization value
    signed: int = 0  # JWTs signed so far (for the tests and the bench)

    def authorization(self, origin: str) -> bytes:
        value = self.tokens.get(origin)
        if value is not None:
            return value
        expires = int(time.time()) + VAPID_TOKEN_SECONDS
        token = jwt.encode(
            {"aud": origin, "exp": expires, "sub": self.subject},
            self.private_key,
            algorithm="ES256",
            headers={"typ": "JWT"},
        )
        value = self.tokens[origin] = f"vapid t={token}, k={self.public_key}".encode("ascii")
        self.signed += 1
        return value


def _vapid_from(values: Mapping[str, Any]) -> _Vapid:
    if not isinstance(values, Mapping) or not values.get("vapid_private_key"):
        raise AdapterConfigurationError("Web Push credentials need a vapid_private_key")
    try:
        private_key = _load_private_key(values["vapid_private_key"])
    except (ValueError, TypeError) as exc:
        raise AdapterConfigurationError(f"vapid_private_key is unusable: {exc}") from exc
    public_key = _public_key_b64(private_key)
    given = values.get("vapid_public_key")
    if given:
        try:
            matches = _b64url_decode(given) == _b64url_decode(public_key)
        except ValueError:
            matches = False
        if not matches:
            raise AdapterConfigurationError(
                "vapid_public_key is not the public key of vapid_private_key"
            )
    subject = str(values.get("subject") or "").strip()
    if not (subject.startswith("mailto:") and len(subject) > 7) and not subject.startswith(
        "https://"
    ):
        raise AdapterConfigurationError(
            "Web Push credentials need a subject: a mailto: address or an https:// URL"
        )
    return _Vapid(private_key, public_key, subject)


# --- Messages -----------------------------------------------------------------------------------


def payload_of(message: OutboundMessage) -> bytes:
    """The JSON the service worker receives: message_id, title, body, data, and url and icon
    from the message's web_push part when it has them."""
    payload: dict[str, Any] = {
        "message_id": message.message_id,
        "title": message.title,
        "body": message.body,
        "data": dict(message.data),
    }
    for name in ("url", "icon"):
        value = message.parts.get(name)
        if value:
            payload[name] = value
    # default=str: a value JSON has no type for (a date) is sent as its text, not a crash.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def topic_of(collapse_id: str) -> str:
    """The Topic header for a collapse id: itself when it is at most 32 characters of the
    base64url alphabet (RFC 8030 5.4), else 32 characters of base64url of its SHA-256."""
    if _TOPIC.fullmatch(collapse_id):
        return collapse_id
    return _b64url(hashlib.sha256(collapse_id.encode()).digest()[:24])


def ttl_of(ttl: int | None) -> int:
    if ttl is None:
        return DEFAULT_TTL
    return max(0, min(int(ttl), DEFAULT_TTL))


def encrypt_payload(
    payload: bytes,
    p256dh: bytes,
    auth: bytes,
    *,
    private_key: ec.EllipticCurvePrivateKey | None = None,
    salt: bytes | None = None,
) -> bytes:
    """The `aes128gcm` body (RFC 8291) of a payload for one subscription: a fresh sender key
    pair and salt unless given (the RFC's example fixes both). ValueError: p256dh is not a
    point on the curve."""
    return http_ece.encrypt(
        payload,
        salt=salt if salt is not None else os.urandom(16),
        private_key=private_key or ec.generate_private_key(ec.SECP256R1()),
        dh=p256dh,
        auth_secret=auth,
        rs=RECORD_SIZE,
        version="aes128gcm",
    )


def _failure(
    message_id: str,
    code: str,
    detail: str = "",
    *,
    status: int | None = None,
    retry_after: float | None = None,
    latency_ms: float | None = None,
) -> SendResult:
    error = classified(WEB_PUSH_ERRORS, "WebPush", code, status)
    return failure(
        message_id,
        error,
        error.meaning if not detail else f"{error.meaning}: {detail}",
        status=status,
        retry_after=None if error.permanent else retry_after,
        latency_ms=latency_ms,
    )


def classify_webpush(
    message_id: str,
    status: int,
    headers: Mapping[bytes, bytes],
    body: bytes,
    *,
    latency_ms: float | None = None,
) -> SendResult:
    """The result of one push service answer."""
    if 200 <= status < 300:
        location = headers.get(b"location")
        return SendResult(
            message_id=message_id,
            ok=True,
            provider_id=location.decode("latin-1") if location else None,
            status_code=status,
            latency_ms=latency_ms,
        )
    return _failure(
        message_id,
        f"HTTP{status}",
        _answer_text(body),
        status=status,
        retry_after=parse_retry_after(headers.get(b"retry-after")),
        latency_ms=latency_ms,
    )


def _answer_text(body: bytes) -> str:
    """What the push service said: the `message` of a JSON error (Mozilla's autopush), else
    the start of its text (FCM, Apple)."""
    if not body:
        return ""
    text = body[:2000].decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        detail = parsed.get("message") or parsed.get("reason") or parsed.get("error")
        if detail:
            text = str(detail)
    return " ".join(text.split())[:300]


# --- The adapter --------------------------------------------------------------------------------


class WebPushAdapter(AsyncBatchAdapter):
    """Sends Web Push messages to the browsers' push services (or any listed endpoint).

    A batch starts no request after `send_rounds - 1` timeouts: what is unsent then fails
    `timeout` (temporary) and goes back to the queue, so the batch ends within `send_rounds`
    timeouts, inside the delivery task's soft limit, however large it is."""

    channel = "WebPush"
    errors = WEB_PUSH_ERRORS
    send_rounds = 7

    def __init__(
        self,
        allowed_hosts: Sequence[str] = (),
        *,
        timeout: float = 10.0,
        concurrency: int = 100,
        max_origins: int = 64,
        ca_file: str | None = None,
    ) -> None:
        """`allowed_hosts`: as WEB_PUSH_ALLOWED_HOSTS; `concurrency`: requests in flight per
        batch; `max_origins`: push service origins with open connections (past it the least
        recently used is closed, once its requests in flight are answered); `ca_file`: CA
        bundle for https:// endpoints (default: the system's)."""
        super().__init__()
        self.allowed_hosts = tuple(allowed_hosts)
        self._allowed = _AllowedHosts.of(self.allowed_hosts)
        self.timeout = timeout
        self.concurrency = max(1, int(concurrency))
        self.max_origins = max_origins
        self.ca_file = ca_file or None
        self._pools = ClosingLRU(max_origins, self._retire)
        self._in_flight: dict[HTTPPool, int] = {}  # pool -> its requests waiting for answers
        self._retired: set[HTTPPool] = set()  # evicted, closed when their last answer comes
        self._pools_loop: asyncio.AbstractEventLoop | None = None
        self._protocols: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> WebPushAdapter:
        return cls(
            getattr(settings, "WEB_PUSH_ALLOWED_HOSTS", ()),
            timeout=float(getattr(settings, "WEB_PUSH_TIMEOUT", 10.0)),
            concurrency=int(getattr(settings, "WEB_PUSH_CONCURRENCY", 100)),
        )

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        vapid: _Vapid = self._client(credentials)
        return await self._each(
            messages, partial(self._send_one, vapid), min(self.concurrency, len(messages))
        )

    def _build_client(self, values: Mapping[str, Any]) -> _Vapid:
        return _vapid_from(values)

    async def _close(self) -> None:
        await super()._close()
        pools = [*self._pools.values(), *self._retired]
        self._pools = ClosingLRU(self.max_origins, self._retire)
        self._in_flight, self._retired = {}, set()
        for pool in pools:
            await pool.aclose()

    async def _close_client(self, client: _Vapid) -> None:
        client.tokens.clear()  # the connections belong to the origins' pools

    async def _send_one(self, vapid: _Vapid, message: OutboundMessage) -> SendResult:
        message_id = message.message_id
        problem, origin, path = _check_endpoint(message.token, self._allowed)
        if problem is not None:
            return _failure(message_id, "endpoint_not_allowed", problem)
        payload = payload_of(message)
        if len(payload) > MAX_PLAINTEXT:
            return local_failure(
                message_id,
                "payload_too_large",
                f"the encrypted payload would be {len(payload) + MAX_BODY - MAX_PLAINTEXT} "
                f"octets; push services accept {MAX_BODY}",
            )
        keys = message.keys
        try:
            p256dh = _b64url_decode(keys.get("p256dh"))
            auth = _b64url_decode(keys.get("auth"))
            if len(p256dh) != 65 or len(auth) != 16:
                raise ValueError("wrong length")
            body = encrypt_payload(payload, p256dh, auth)
        except (ValueError, TypeError, AttributeError, http_ece.ECEException) as exc:
            return _failure(message_id, "subscription_keys_invalid", str(exc))

        try:
            pool = self._pool(origin)
        except ValueError as exc:  # an unusable HTTPS_PROXY / HTTP_PROXY setting
            return local_failure(message_id, "network_error", f"proxy setting: {exc}")
        headers = [
            (b":method", b"POST"),
            (b":scheme", pool.scheme),
            (b":authority", pool.authority),
            (b":path", path.encode("ascii")),
            (b"ttl", str(ttl_of(message.ttl)).encode()),
            (b"urgency", b"high" if message.priority == "high" else b"normal"),
            *_STATIC_HEADERS,
            (b"authorization", vapid.authorization(origin)),
        ]
        if message.collapse_id:
            headers.append((b"topic", topic_of(message.collapse_id).encode("ascii")))
        in_flight = self._in_flight
        in_flight[pool] = in_flight.get(pool, 0) + 1
        try:
            answered = await timed_request(
                pool, headers, body, timeout=self.timeout, message_id=message_id
            )
        finally:
            left = in_flight[pool] - 1
            if left:
                in_flight[pool] = left
            else:
                del in_flight[pool]
                if pool in self._retired:
                    self._retired.discard(pool)
                    pool.close()
        if isinstance(answered, SendResult):
            return answered
        (status, response_headers, response_body), latency_ms = answered
        return classify_webpush(
            message_id, status, response_headers, response_body, latency_ms=latency_ms
        )

    def _pool(self, origin: str) -> HTTPPool:
        """The connections to one push service origin on this loop, opened on first use."""
        loop = asyncio.get_running_loop()
        if self._pools_loop is not loop:  # first use, or a forked child's new loop
            self._pools = ClosingLRU(self.max_origins, self._retire)
            self._in_flight, self._retired = {}, set()
            self._pools_loop = loop
        pool = self._pools.get(origin)
        if pool is not None:
            return pool
        pool = HTTPPool(
            origin,
            timeout=self.timeout,
            max_connections=2,
            max_streams=self.concurrency,
            http1_connections=self.concurrency,
            ca_file=self.ca_file,
            proxy=proxy_for(origin),
            protocols=self._protocols,
            never_indexed=(b":path", b"topic"),
        )
        self._pools[origin] = pool
        return pool

    def _retire(self, pool: HTTPPool) -> None:
        """An origin's pool pushed out of `_pools`: closed now, or after its last answer."""
        if pool in self._in_flight:
            self._retired.add(pool)
        else:
            pool.close()
