"""Apple Push Notification service adapter: HTTP/2, token (JWT) or certificate auth.

Requests go over our HTTP/2 client (`adapters.transport.http2_client`, the one FCM uses): a few
long-lived TLS connections per credential set, up to the server's concurrent-stream limit
each, with flow control, timeouts (a stream reset, the connection kept), GOAWAY handling and
`Retry-After`. The APNs specifics live here: the request headers (device-token path,
`apns-id`, topic, push type, priority, expiration, collapse id, the provider token), the
payload, and the answer's classification (`APNS_ERRORS`, `classify_apns`).

With `HTTPS_PROXY` set (and NO_PROXY not covering the endpoint), read when a credential
set's client is built, each connection is a CONNECT tunnel through that proxy with TLS and
ALPN h2 inside it, end to end with APNs (`adapters.transport.proxy`).

aioapns 4.0 is not used: profiled in the campaign benchmark, its send path (a stream-slot
semaphore, h2 stream bookkeeping, HPACK table search for each request's unique path and
apns-id, a second JSON encoding) cost 2.7 times the CPU of an FCM send over our client
(then on h2); see docs/architecture.md, "Performance", and bench/RESULTS.md for the figures.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters import registry
from adapters.asyncio_adapter import (
    AsyncBatchAdapter,
    resend_after_renewal,
    timed_request,
    timed_requests,
)
from adapters.base import (
    JSON_OBJECT,
    TEXT,
    AdapterConfigurationError,
    Credentials,
    CredentialsInvalid,
    OutboundMessage,
    SendResult,
    object_schema,
)
from adapters.errors import (
    ErrorClass,
    classified,
    error_table,
    failure,
    local_failure,
    parse_json_body,
    parse_retry_after,
)
from adapters.transport.http2_client import Headers, HTTP2Pool, Response
from adapters.transport.proxy import proxy_for

APPLE_PRODUCTION = "https://api.push.apple.com"
APPLE_SANDBOX = "https://api.sandbox.push.apple.com"
MAX_PAYLOAD_BYTES = 4096
# Apple: renew the provider token no more often than every 20 minutes and at least every 60.
PROVIDER_TOKEN_RENEW_SECONDS = 40 * 60

# (code, HTTP status, permanent, token_invalid, credential_rejected, meaning), in Apple's order.
# A 400 is permanent: the same request fails the same way. Credential and configuration
# problems (403) are temporary: the operator can fix them and the message is still good.
APNS_ERRORS: dict[str, ErrorClass] = error_table(
    "APNs",
    [
        ("BadCollapseId", 400, True, False, False, "apns-collapse-id exceeds 64 bytes"),
        ("BadDeviceToken", 400, True, True, False, "the device token is malformed or wrong env"),
        ("BadExpirationDate", 400, True, False, False, "apns-expiration is bad"),
        ("BadMessageId", 400, True, False, False, "apns-id is bad"),
        ("BadPriority", 400, True, False, False, "apns-priority is bad"),
        ("BadTopic", 400, True, False, False, "apns-topic is bad"),
        ("DeviceTokenNotForTopic", 400, True, True, False, "the token belongs to another topic"),
        ("DuplicateHeaders", 400, True, False, False, "a header was repeated"),
        ("IdleTimeout", 400, False, False, False, "the connection idled out; resend"),
        ("InvalidPushType", 400, True, False, False, "apns-push-type is bad"),
        ("MissingDeviceToken", 400, True, False, False, "no device token in the path"),
        ("MissingTopic", 400, True, False, False, "apns-topic is required and missing"),
        ("PayloadEmpty", 400, True, False, False, "the payload is empty"),
        ("TopicDisallowed", 400, True, False, False, "pushing to this topic is not allowed"),
        ("BadCertificate", 403, False, False, False, "the client certificate is bad"),
        ("BadCertificateEnvironment", 403, False, False, False, "certificate for other env"),
        ("ExpiredProviderToken", 403, False, False, True, "provider JWT older than 1 hour"),
        ("Forbidden", 403, False, False, False, "the action is not allowed"),
        ("InvalidProviderToken", 403, False, False, True, "provider JWT invalid or unknown kid"),
        ("MissingProviderToken", 403, False, False, False, "no certificate and no JWT"),
        ("UnrelatedKeyIdInToken", 403, False, False, False, "key id does not match the team"),
        ("BadEnvironmentKeyIdInToken", 403, False, False, False, "key is for the other env"),
        ("BadPath", 404, True, False, False, "the request path is bad"),
        ("MethodNotAllowed", 405, True, False, False, "only POST is supported"),
        ("ExpiredToken", 410, True, True, False, "the device token has expired"),
        ("Unregistered", 410, True, True, False, "the device token is no longer active"),
        ("PayloadTooLarge", 413, True, False, False, "payload over 4096 bytes"),
        ("TooManyProviderTokenUpdates", 429, False, False, False, "JWT renewed too often"),
        ("TooManyRequests", 429, False, False, False, "too many requests to the same token"),
        ("InternalServerError", 500, False, False, False, "Apple internal error"),
        ("ServiceUnavailable", 503, False, False, False, "APNs unavailable"),
        ("Shutdown", 503, False, False, False, "the APNs server is shutting down"),
    ],
)


def classify_apns(
    message_id: str,
    status: int,
    reason: str | None = None,
    *,
    provider_id: str | None = None,
    retry_after: float | None = None,
    latency_ms: float | None = None,
) -> SendResult:
    """The result of one APNs answer: its HTTP status and the `reason` of its JSON body."""
    if status == 200:
        return SendResult(
            message_id=message_id,
            ok=True,
            provider_id=provider_id,
            status_code=200,
            latency_ms=latency_ms,
        )
    code = reason or f"HTTP{status}"
    error = classified(APNS_ERRORS, "APNs", code, status)
    return failure(message_id, error, status=status, retry_after=retry_after, latency_ms=latency_ms)


class ProviderToken:
    """The provider JWT (ES256, kid/iss/iat) all connections of one client send, reused for
    40 minutes; renewed early only when APNs rejects it."""

    def __init__(self, key: str, key_id: str, team_id: str) -> None:
        self.key = key
        self.key_id = key_id
        self.team_id = team_id
        self._header: str | None = None
        self._issued_monotonic = 0.0

    def get_header(self) -> str:
        age = time.monotonic() - self._issued_monotonic
        if self._header is None or age >= PROVIDER_TOKEN_RENEW_SECONDS:
            return self.issue()
        return self._header

    def issue(self, *, iat: int | None = None) -> str:
        """Sign a new token now. `iat` overrides the claim, as a skewed clock would."""
        token = jwt.encode(
            {"iss": self.team_id, "iat": int(time.time()) if iat is None else iat},
            self.key,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )
        self._header = f"bearer {token}"
        self._issued_monotonic = time.monotonic()
        return self._header

    def renew_if_current(self, rejected_header: str | None) -> None:
        # Many answers of one batch report the same rejected token: sign one replacement.
        if rejected_header is None or rejected_header == self._header:
            self.issue()


# Values that are each request's own: HPACK literals that never enter the dynamic table.
_NEVER_INDEXED = (b":path", b"apns-id", b"apns-expiration")


@dataclass
class _Client:
    pool: HTTP2Pool
    auth: ProviderToken | None
    topic: bytes

    def request_headers(
        self, message: OutboundMessage, notification_id: str, background: bool, auth: str | None
    ) -> Headers:
        token = message.token
        if not (token.isascii() and token.isalnum()):
            token = quote(token, safe="")  # APNs answers BadDeviceToken; the path stays one
        headers = [
            (b":method", b"POST"),
            (b":scheme", self.pool.scheme),
            (b":authority", self.pool.authority),
            (b":path", b"/3/device/" + token.encode("ascii")),
            (b"apns-id", notification_id.encode("ascii")),
            (b"apns-topic", self.topic),
            (b"apns-push-type", b"background" if background else b"alert"),
            (b"apns-priority", b"5" if background or message.priority != "high" else b"10"),
        ]
        # No ttl: no apns-expiration header, so APNs stores and retries per its default.
        if message.ttl is not None:
            headers.append((b"apns-expiration", b"%d" % (int(time.time()) + int(message.ttl))))
        if message.collapse_id:
            headers.append((b"apns-collapse-id", message.collapse_id.encode()))
        if auth is not None:
            headers.append((b"authorization", auth.encode("latin-1")))
        return headers


CREDENTIAL_FIELDS = ("private_key", "key_id", "team_id", "topic", "sandbox")
CERTIFICATE_FIELDS = ("auth", "certificate", "topic", "sandbox")


def clean_credentials(values: Mapping[str, Any], *, default_subject: str = "") -> dict[str, Any]:
    """The stored form of APNs credentials: token auth from `private_key` (the .p8 key's
    text: a PEM EC private key, since APNs provider tokens are ES256), `key_id`, `team_id`,
    `topic` and `sandbox`; or the stored form again, `"auth": "token"` or `"certificate"`
    (a PEM certificate chain with its key, `topic`, `sandbox`)."""
    auth = values.get("auth", "token")
    if auth == "certificate":
        return _clean_certificate(values)
    if auth != "token":
        raise CredentialsInvalid('APNs "auth" must be "token" or "certificate".')
    given = {name: value for name, value in values.items() if name != "auth"}
    if set(given) - set(CREDENTIAL_FIELDS) or not set(CREDENTIAL_FIELDS[:4]) <= set(given):
        raise CredentialsInvalid(
            "APNs credentials take private_key, key_id, team_id, topic and sandbox."
        )
    key_id, team_id, topic = given["key_id"], given["team_id"], given["topic"]
    missing = [
        name
        for name, value in (("key id", key_id), ("team id", team_id), ("topic", topic))
        if not (value or "").strip()
    ]
    if missing:
        raise CredentialsInvalid(f"APNs token auth also needs the {', '.join(missing)}.")
    private_key = given["private_key"]
    try:
        key = serialization.load_pem_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CredentialsInvalid(
            "The APNs key is not a PEM (.p8) private key without a password."
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialsInvalid("The APNs key is not an EC private key, as a .p8 key is.")
    return {
        "auth": "token",
        "key_id": key_id.strip(),
        "team_id": team_id.strip(),
        "topic": topic.strip(),
        "private_key": private_key,
        "sandbox": bool(given.get("sandbox", False)),
    }


def _clean_certificate(values: Mapping[str, Any]) -> dict[str, Any]:
    if set(values) - set(CERTIFICATE_FIELDS):
        raise CredentialsInvalid("APNs certificate credentials take certificate, topic, sandbox.")
    certificate, topic = values.get("certificate"), values.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise CredentialsInvalid("APNs certificate auth also needs the topic.")
    if not isinstance(certificate, str) or not certificate.strip():
        raise CredentialsInvalid("APNs certificate auth needs the certificate.")
    # ssl loads a certificate chain only from a file, as the adapter does: owner-only, removed.
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(certificate)
        ssl.create_default_context().load_cert_chain(path)
    except (ssl.SSLError, OSError) as exc:
        raise CredentialsInvalid(
            "The APNs certificate is not a PEM certificate with its private key."
        ) from exc
    finally:
        os.unlink(path)
    return {
        "auth": "certificate",
        "certificate": certificate,
        "topic": topic.strip(),
        "sandbox": bool(values.get("sandbox", False)),
    }


def content_of(
    *,
    title: str,
    body: str,
    data: Mapping[str, Any],
    part: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a push of this content carries: its title, body and data (device pushes have no
    part of their own). The adapter builds the provider's JSON from it; a preview shows it."""
    return {"title": title, "body": body, "data": data}


def build_payload(message: OutboundMessage) -> dict[str, Any]:
    """The APNs JSON: `aps` (alert with sound, or content-available) plus custom data, of
    the message's `content_of`."""
    shown = content_of(
        title=message.title, body=message.body, data=message.data, part=message.parts
    )
    payload = {key: value for key, value in shown["data"].items() if key != "aps"}
    if shown["title"] or shown["body"]:
        alert = {"title": shown["title"], "body": shown["body"]}
        payload["aps"] = {
            "alert": {key: value for key, value in alert.items() if value},
            "sound": "default",
        }
    else:
        payload["aps"] = {"content-available": 1}
    return payload


def _apns_id(message_id: str) -> str:
    # APNs wants a canonical UUID; reuse ours when it is one so both sides' logs correlate.
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return str(uuid.uuid4())


class APNsAdapter(AsyncBatchAdapter):
    """Sends iOS pushes through APNs (or an endpoint given for tests), one batch at a time."""

    channel = "iOSPush"
    errors = APNS_ERRORS
    secret_fields = ("private_key", "certificate")
    content_schema = object_schema(
        "title, body and data.", {"title": TEXT, "body": TEXT, "data": JSON_OBJECT}
    )

    def __init__(
        self,
        endpoint: str | None = None,
        ca_file: str | None = None,
        timeout: float = 10.0,
        *,
        max_concurrency: int = 500,
        max_connections: int = 4,
    ) -> None:
        self.endpoint = endpoint or None
        self.ca_file = ca_file or None
        self.timeout = timeout
        self.max_concurrency = max_concurrency  # streams per connection, if the server allows
        self.max_connections = max_connections
        super().__init__()

    # The channel's credential schema and what a message looks like on it (used to send
    # and to preview alike): the adapter's own functions.
    clean_credentials = staticmethod(clean_credentials)
    content_of = staticmethod(content_of)

    @classmethod
    def from_settings(cls, settings: Any) -> APNsAdapter:
        return cls(
            endpoint=getattr(settings, "APNS_ENDPOINT", "") or None,
            ca_file=getattr(settings, "APNS_CA_FILE", "") or None,
        )

    def provider_token(self, credentials: Credentials) -> ProviderToken | None:
        """The provider token in use for these credentials (None for certificate auth)."""
        return registry.run_in_loop(self._provider_token(credentials), timeout=self.timeout)

    async def _provider_token(self, credentials: Credentials) -> ProviderToken | None:
        return self._client(credentials).auth

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        client = self._client(credentials)
        token = client.auth
        auth = token.get_header() if token else None
        results = await self._send_all(client, messages, auth)
        if token is None:  # certificate auth: nothing to renew
            return results

        async def renew() -> str:
            token.renew_if_current(auth)
            return token.get_header()

        return await resend_after_renewal(
            results,
            messages,
            APNS_ERRORS,
            renew,
            lambda index, renewed: self._send_one(client, messages[index], renewed),
        )

    def _request(
        self, client: _Client, message: OutboundMessage, auth: str | None
    ) -> tuple[Headers, bytes, str] | SendResult:
        """A message's request (headers, body, apns-id), or its failure before sending."""
        # Encoded once: measured and sent as the same bytes.
        payload = build_payload(message)
        try:
            body = orjson.dumps(payload)  # UTF-8, compact: a tenth of json.dumps' CPU
        except TypeError:  # beyond orjson (an integer over 64 bits): the standard library's
            body = json.dumps(payload, ensure_ascii=False).encode()
        if len(body) > MAX_PAYLOAD_BYTES:
            return local_failure(
                message.message_id,
                "payload_too_large",
                f"payload is {len(body)} bytes, APNs accepts {MAX_PAYLOAD_BYTES}",
            )
        background = not (message.title or message.body)
        notification_id = _apns_id(message.message_id)
        headers = client.request_headers(message, notification_id, background, auth)
        return headers, body, notification_id

    async def _send_all(
        self, client: _Client, messages: Sequence[OutboundMessage], auth: str | None
    ) -> list[SendResult]:
        """A batch's requests, sent together (timed_requests)."""
        results: list[SendResult | None] = []
        sent: list[tuple[int, str]] = []  # (index, apns-id) of each request sent
        items = []
        for index, message in enumerate(messages):
            request = self._request(client, message, auth)
            if isinstance(request, SendResult):
                results.append(request)
                continue
            headers, body, notification_id = request
            results.append(None)
            sent.append((index, notification_id))
            items.append((headers, body))
        answers = await timed_requests(
            client.pool,
            items,
            timeout=self.timeout,
            message_ids=[messages[index].message_id for index, _id in sent],
        )
        for (index, notification_id), answered in zip(sent, answers, strict=True):
            results[index] = self._result(messages[index], notification_id, answered)
        return results

    async def _send_one(
        self, client: _Client, message: OutboundMessage, auth: str | None
    ) -> SendResult:
        request = self._request(client, message, auth)
        if isinstance(request, SendResult):
            return request
        headers, body, notification_id = request
        answered = await timed_request(
            client.pool, headers, body, timeout=self.timeout, message_id=message.message_id
        )
        return self._result(message, notification_id, answered)

    @staticmethod
    def _result(
        message: OutboundMessage,
        notification_id: str,
        answered: tuple[Response, float] | SendResult,
    ) -> SendResult:
        if isinstance(answered, SendResult):
            return answered
        (status, response_headers, answer), latency_ms = answered
        error = (parse_json_body(answer) or {}) if answer else {}
        return classify_apns(
            message.message_id,
            status,
            error.get("reason"),
            provider_id=notification_id,
            retry_after=parse_retry_after(response_headers.get(b"retry-after")),
            latency_ms=latency_ms,
        )

    def _build_client(self, values: Mapping[str, Any]) -> _Client:
        try:
            topic = values["topic"]
            sandbox = bool(values.get("sandbox", False))
            auth_kind = values.get("auth", "token")
        except KeyError as exc:
            raise AdapterConfigurationError(f"APNs credentials lack {exc}") from exc
        origin = self.endpoint or (APPLE_SANDBOX if sandbox else APPLE_PRODUCTION)
        url = urlsplit(origin)
        if url.scheme != "https" or not url.hostname:
            raise AdapterConfigurationError(f"APNs endpoint must be https://host[:port]: {url}")
        if auth_kind == "token":
            try:
                auth = ProviderToken(values["private_key"], values["key_id"], values["team_id"])
                auth.issue()  # fails now, not on every send, when the key is unusable
            except KeyError as exc:
                raise AdapterConfigurationError(f"APNs token credentials lack {exc}") from exc
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise AdapterConfigurationError(f"APNs private key is unusable: {exc}") from exc
            pool = self._pool(origin)
            return _Client(pool=pool, auth=auth, topic=topic.encode())
        if auth_kind == "certificate":
            if not values.get("certificate"):
                raise AdapterConfigurationError("APNs certificate credentials lack 'certificate'")
            # ssl loads a certificate chain only from a file: write it owner-only, then remove.
            fd, path = tempfile.mkstemp(suffix=".pem")
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(values["certificate"])
                pool = self._pool(origin, client_certificate=path)
            except (ssl.SSLError, OSError) as exc:
                raise AdapterConfigurationError(f"APNs certificate is unusable: {exc}") from exc
            finally:
                os.unlink(path)
            return _Client(pool=pool, auth=None, topic=topic.encode())
        raise AdapterConfigurationError(f"unknown APNs auth {auth_kind!r}")

    def _pool(self, origin: str, client_certificate: str | None = None) -> HTTP2Pool:
        try:
            proxy = proxy_for(origin)
        except ValueError as exc:
            raise AdapterConfigurationError(f"APNs proxy setting is unusable: {exc}") from exc
        return HTTP2Pool(
            origin,
            timeout=self.timeout,
            max_connections=self.max_connections,
            max_streams=self.max_concurrency,
            ca_file=self.ca_file,
            client_certificate=client_certificate,
            never_indexed=_NEVER_INDEXED,
            proxy=proxy,
        )
