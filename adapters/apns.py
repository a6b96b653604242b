"""Apple Push Notification service adapter: HTTP/2 via aioapns, token (JWT) or certificate auth.

aioapns 4.0 is used for its connection pool, its h2 request writing and its connection
handling. Read from its source (`aioapns/connection.py`), it needed these overrides, all in
this module and all narrow:

* host and port are class attributes of the protocol (`APNS_SERVER`, `APNS_PORT`), fixed to
  Apple's hosts: we make one protocol subclass per endpoint and set it as the pool's
  `protocol_class`. The CA comes in through aioapns' own `ssl_context` argument (verification
  stays on; we add ALPN `h2`, which aioapns does not set).
* Each connection got its own `JWTAuthorizationHeaderProvider`, whose token cannot be renewed on
  demand: our pool subclass shares one `ProviderToken` between its connections.
* The response handling drops `Retry-After`, never acknowledges received DATA (the connection's
  flow-control window runs dry after ~64 KiB of error bodies and the connection stalls), parses
  a body assuming one DATA frame, and calls `set_result` on futures we cancelled on timeout
  (an `InvalidStateError` inside `data_received`, which kills the connection): our protocol
  subclass collects each stream's headers and body and completes it on `StreamEnded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import jwt
from aioapns.common import NotificationRequest, NotificationResult, PushType
from aioapns.connection import (
    APNsBaseConnectionPool,
    APNsCertConnectionPool,
    APNsKeyConnectionPool,
    APNsTLSClientProtocol,
    AuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as APNsConnectionError
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error
from hpack import Encoder

from adapters import registry
from adapters.asyncio_adapter import AsyncBatchAdapter
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult
from adapters.errors import (
    classify_apns,
    is_credential_rejected,
    local_failure,
    parse_json_body,
    parse_retry_after,
)

APPLE_PRODUCTION = "https://api.push.apple.com"
APPLE_SANDBOX = "https://api.sandbox.push.apple.com"
MAX_PAYLOAD_BYTES = 4096
# Apple: renew the provider token no more often than every 20 minutes and at least every 60.
PROVIDER_TOKEN_RENEW_SECONDS = 40 * 60
MAX_CLIENTS = 64


class ProviderToken(AuthorizationHeaderProvider):
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


class _Result(NotificationResult):
    __slots__ = ("retry_after",)

    def __init__(self, notification_id, status, description, timestamp, retry_after) -> None:
        super().__init__(notification_id, status, description, timestamp)
        self.retry_after = retry_after


class _PlainEncoder(Encoder):
    """HPACK without Huffman coding: the values that change per request (the device-token
    path, the apns-id) cost more CPU to Huffman-code in pure Python than the bytes they save
    on a loopback or datacenter link; repeated values are indexed either way."""

    def encode(self, headers, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


class _Protocol(APNsTLSClientProtocol):
    """aioapns' protocol with per-stream response handling (see the module docstring), and
    two costs per request taken out: h2's re-validation of headers we build ourselves, and
    one TLS record and socket write per request (a batch's requests leave in one write)."""

    INACTIVITY_TIME = 60  # aioapns closes idle connections after 10 s; Apple wants them kept

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = H2Connection(
            config=H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.conn.encoder = _PlainEncoder()
        self._responses: dict[int, tuple[dict[bytes, bytes], bytearray]] = {}
        self._flush_scheduled = False

    def flush(self) -> None:
        # Called once per request by aioapns: gather this loop pass's frames into one write.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        self._flush_scheduled = False
        if self.transport is not None and not self.transport.is_closing():
            self.refresh_inactivity_timer()
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except H2Error:
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                self._responses[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, DataReceived):
                response = self._responses.get(event.stream_id)
                if response is not None:
                    response[1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self._complete(event.stream_id)
                self.free_channels.release()
            elif isinstance(event, StreamReset):
                self._fail(event.stream_id, ConnectionClosed(f"stream reset {event.error_code}"))
                self.free_channels.release()
            elif isinstance(event, RemoteSettingsChanged):
                self.on_remote_settings_changed(event.changed_settings)
            elif isinstance(event, ConnectionTerminated):
                self.on_connection_terminated(event)
        if self.transport is not None and not self.transport.is_closing():
            self.flush()

    def _complete(self, stream_id: int) -> None:
        headers, body = self._responses.pop(stream_id, ({}, bytearray()))
        notification_id = self.request_streams.pop(stream_id, None)
        future = self.requests.pop(notification_id, None)
        if future is None or future.done():
            return  # the sender gave up (timeout) meanwhile
        error = parse_json_body(bytes(body)) if body else None
        error = error or {}
        future.set_result(
            _Result(
                notification_id,
                headers.get(b":status", b"").decode("latin-1"),
                error.get("reason"),
                error.get("timestamp"),
                parse_retry_after(headers.get(b"retry-after")),
            )
        )

    def _fail(self, stream_id: int, exc: Exception) -> None:
        self._responses.pop(stream_id, None)
        future = self.requests.pop(self.request_streams.pop(stream_id, None), None)
        if future is not None and not future.done():
            future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inactivity_timer:
            self.inactivity_timer.cancel()
        if self.on_connection_lost:
            with contextlib.suppress(ValueError):  # never made it into the pool's list
                self.on_connection_lost(self)
        closed = ConnectionClosed(str(exc))
        for future in self.requests.values():
            if not future.done():
                future.set_exception(closed)
        self.requests.clear()
        self.free_channels.destroy(closed)


class _TokenPool(APNsKeyConnectionPool):
    """aioapns' token-auth pool, with our protocol and one shared provider token."""

    def __init__(self, *, protocol_class: type[_Protocol], auth: ProviderToken, **kwargs) -> None:
        super().__init__(**kwargs)
        self.protocol_class = protocol_class
        self.auth = auth

    async def create_connection(self) -> _Protocol:
        factory = partial(
            self.protocol_class, self.apns_topic, self.loop, self.discard_connection, self.auth
        )
        return await self._create_connection(factory)


@dataclass
class _Client:
    pool: APNsBaseConnectionPool
    auth: ProviderToken | None


def build_payload(message: OutboundMessage) -> dict[str, Any]:
    """The APNs JSON: `aps` (alert with sound, or content-available) plus custom data."""
    payload = {key: value for key, value in message.data.items() if key != "aps"}
    if message.title or message.body:
        alert = {"title": message.title, "body": message.body}
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

    def __init__(
        self,
        endpoint: str | None = None,
        ca_file: str | None = None,
        timeout: float = 10.0,
        *,
        max_concurrency: int = 200,
        max_connections: int = 4,
    ) -> None:
        self.endpoint = endpoint or None
        self.ca_file = ca_file or None
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.max_connections = max_connections
        super().__init__()
        self._protocols: dict[tuple[str, int], type[_Protocol]] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> APNsAdapter:
        return cls(
            endpoint=getattr(settings, "APNS_ENDPOINT", "") or None,
            ca_file=getattr(settings, "APNS_CA_FILE", "") or None,
        )

    async def _close_client(self, client: _Client) -> None:
        client.pool.close()

    def provider_token(self, credentials: Credentials) -> ProviderToken | None:
        """The provider token in use for these credentials (None for certificate auth)."""
        return registry.run_in_loop(self._provider_token(credentials), timeout=self.timeout)

    async def _provider_token(self, credentials: Credentials) -> ProviderToken | None:
        return self._client(credentials).auth

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        client = self._client(credentials)
        header = client.auth.get_header() if client.auth else None
        slots = asyncio.Semaphore(self.max_concurrency)
        results = list(await asyncio.gather(*(self._send_one(client, m, slots) for m in messages)))
        rejected = [i for i, result in enumerate(results) if is_credential_rejected(result)]
        if rejected and client.auth is not None:
            client.auth.renew_if_current(header)
            retried = await asyncio.gather(
                *(self._send_one(client, messages[i], slots) for i in rejected)
            )
            for index, result in zip(rejected, retried, strict=True):
                results[index] = result
        return results

    async def _send_one(
        self, client: _Client, message: OutboundMessage, slots: asyncio.Semaphore
    ) -> SendResult:
        payload = build_payload(message)
        # Measured exactly as aioapns will serialize it.
        size = len(json.dumps(payload, ensure_ascii=False).encode())
        if size > MAX_PAYLOAD_BYTES:
            return local_failure(
                message.message_id,
                "payload_too_large",
                f"payload is {size} bytes, APNs accepts {MAX_PAYLOAD_BYTES}",
            )
        background = not (message.title or message.body)
        request = NotificationRequest(
            device_token=message.token,
            message=payload,
            notification_id=_apns_id(message.message_id),
            # No ttl: no apns-expiration header, so APNs stores and retries per its default.
            time_to_live=message.ttl,
            priority=5 if background or message.priority != "high" else 10,
            collapse_key=message.collapse_id or None,
            push_type=PushType.BACKGROUND if background else PushType.ALERT,
        )
        async with slots:
            started = time.perf_counter()
            try:
                # A deadline on this task, not wait_for's extra task per request.
                async with asyncio.timeout(self.timeout):
                    response = await client.pool.send_notification(request)
            except TimeoutError:
                return local_failure(
                    message.message_id,
                    "timeout",
                    f"no answer within {self.timeout} s",
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            except (
                MaxAttemptsExceeded,
                APNsConnectionError,
                ConnectionClosed,
                OSError,
                H2Error,
            ) as exc:
                return local_failure(
                    message.message_id,
                    "network_error",
                    f"{type(exc).__name__}: {exc}",
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            latency_ms = (time.perf_counter() - started) * 1000
        return classify_apns(
            message.message_id,
            int(response.status or 0),
            response.description,
            provider_id=request.notification_id,
            retry_after=getattr(response, "retry_after", None),
            latency_ms=latency_ms,
        )

    def _client(self, credentials: Credentials) -> _Client:
        loop = asyncio.get_running_loop()
        if self._clients_loop is not loop:  # first use, or a forked child's new loop
            self._clients = {}
            self._clients_loop = loop
        client = self._clients.get(credentials.key)
        if client is None:
            if len(self._clients) >= MAX_CLIENTS:
                # Credentials rotate (the key has a content digest): drop the oldest client.
                oldest = next(iter(self._clients))
                self._clients.pop(oldest).pool.close()
            client = self._clients[credentials.key] = self._build_client(credentials.values)
        return client

    def _build_client(self, values: Mapping[str, Any]) -> _Client:
        try:
            topic = values["topic"]
            sandbox = bool(values.get("sandbox", False))
            auth_kind = values.get("auth", "token")
        except KeyError as exc:
            raise AdapterConfigurationError(f"APNs credentials lack {exc}") from exc
        url = urlsplit(self.endpoint or (APPLE_SANDBOX if sandbox else APPLE_PRODUCTION))
        if url.scheme != "https" or not url.hostname:
            raise AdapterConfigurationError(f"APNs endpoint must be https://host[:port]: {url}")
        protocol_class = self._protocol_class(url.hostname, url.port or 443)
        context = ssl.create_default_context(cafile=self.ca_file)
        context.set_alpn_protocols(["h2"])
        common = {
            "topic": topic,
            "max_connections": self.max_connections,
            # aioapns sleeps 1 s between attempts; two bound a dead endpoint's cost.
            "max_connection_attempts": 2,
            "use_sandbox": sandbox,
            "ssl_context": context,
        }
        if auth_kind == "token":
            try:
                auth = ProviderToken(values["private_key"], values["key_id"], values["team_id"])
                auth.issue()  # fails now, not on every send, when the key is unusable
            except KeyError as exc:
                raise AdapterConfigurationError(f"APNs token credentials lack {exc}") from exc
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise AdapterConfigurationError(f"APNs private key is unusable: {exc}") from exc
            pool = _TokenPool(
                protocol_class=protocol_class,
                auth=auth,
                key=values["private_key"],
                key_id=values["key_id"],
                team_id=values["team_id"],
                **common,
            )
            return _Client(pool=pool, auth=auth)
        if auth_kind == "certificate":
            pool = self._certificate_pool(values, common)
            pool.protocol_class = protocol_class
            return _Client(pool=pool, auth=None)
        raise AdapterConfigurationError(f"unknown APNs auth {auth_kind!r}")

    @staticmethod
    def _certificate_pool(values: Mapping[str, Any], common: dict) -> APNsCertConnectionPool:
        if not values.get("certificate"):
            raise AdapterConfigurationError("APNs certificate credentials lack 'certificate'")
        # ssl can only load a certificate chain from a file: write it owner-only, then remove.
        fd, path = tempfile.mkstemp(suffix=".pem")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(values["certificate"])
            return APNsCertConnectionPool(cert_file=path, **common)
        except (ssl.SSLError, OSError) as exc:
            raise AdapterConfigurationError(f"APNs certificate is unusable: {exc}") from exc
        finally:
            os.unlink(path)

    def _protocol_class(self, host: str, port: int) -> type[_Protocol]:
        protocol_class = self._protocols.get((host, port))
        if protocol_class is None:
            protocol_class = type(
                "APNsProtocol", (_Protocol,), {"APNS_SERVER": host, "APNS_PORT": port}
            )
            self._protocols[(host, port)] = protocol_class
        return protocol_class
