"""Firebase Cloud Messaging adapter (HTTP v1), sending a batch as concurrent requests: HTTP/2
streams, or HTTP/1.1 keep-alive connections where the endpoint speaks only that.

pyfcm 2.1.1 builds the message JSON here (`BaseAPI.parse_payload`), but does not send it. Read
from its source (`pyfcm/baseapi.py`, `pyfcm/async_fcm.py`), its sending paths do not fit:
the synchronous one sleeps on Retry-After inside the call and retries 503s itself; the async
one opens a new event loop per call and a new aiohttp session per message, returns only the
JSON body (no status, no Retry-After), and refreshes the OAuth token on every call; the
endpoint is a class constant. So requests go to `{endpoint}/v1/projects/{project_id}/
messages:send` through `adapters.transport.http_client.HTTPPool`, one per credential set per
process: HTTP/2 where the server speaks it (a few long-lived connections, many streams each; over
TLS as ALPN decides, as with Google's endpoint; over cleartext with prior knowledge when the
server answers the preface, as the fake does), else HTTP/1.1 (aiohttp, a bounded keep-alive
pool; e.g. a staging mock). Both give the same (status, headers, body) to one error table.
The OAuth token comes from google-auth service-account credentials (the JSON's own
`token_uri`), cached until it expires and refreshed once on a 401.

`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (`adapters.transport.proxy`) are read when a credential
set's client is built, for the endpoint and for the token request alike.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import google.auth.exceptions
import google.auth.transport.requests
import orjson
import requests
from google.oauth2 import service_account
from pyfcm.baseapi import BaseAPI

from adapters.asyncio_adapter import (
    AsyncBatchAdapter,
    RenewalFailed,
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
from adapters.transport.http2_client import Headers, Response
from adapters.transport.http_client import HTTPPool
from adapters.transport.proxy import proxy_for

GOOGLE_ENDPOINT = "https://fcm.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/firebase.messaging"]


# FCM v1 `FcmError.errorCode`s, then the Google status names a bare 401/403 carries.
FCM_ERRORS: dict[str, ErrorClass] = error_table(
    "FCM",
    [
        ("UNSPECIFIED_ERROR", None, False, False, False, "no more information"),
        (
            "INVALID_ARGUMENT",
            400,
            True,
            False,
            False,
            "bad request; token_invalid only when it names the registration token",
        ),
        ("UNREGISTERED", 404, True, True, False, "the app instance was unregistered"),
        ("SENDER_ID_MISMATCH", 403, True, True, False, "token belongs to another sender"),
        ("QUOTA_EXCEEDED", 429, False, False, False, "sending limit exceeded"),
        ("UNAVAILABLE", 503, False, False, False, "FCM overloaded"),
        ("INTERNAL", 500, False, False, False, "FCM internal error"),
        ("THIRD_PARTY_AUTH_ERROR", 401, False, False, False, "APNs/web-push credential bad"),
        ("UNAUTHENTICATED", 401, False, False, True, "our OAuth access token was refused"),
        ("PERMISSION_DENIED", 403, False, False, False, "service account lacks permission"),
    ],
)


def _names_the_token(error: Mapping[str, Any]) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token rather than the message."""
    for detail in error.get("details") or ():
        for violation in detail.get("fieldViolations") or ():
            field = str(violation.get("field", ""))
            if field == "message.token" or "registration token" in field.lower():
                return True
    text = str(error.get("message", "")).lower()
    return "registration token" in text or "message.token" in text


def classify_fcm(
    message_id: str,
    status: int,
    body: Mapping[str, Any] | None,
    *,
    retry_after: float | None = None,
    latency_ms: float | None = None,
) -> SendResult:
    """The result of one FCM v1 answer: its HTTP status and parsed JSON body (None if not JSON)."""
    body = body or {}
    if status == 200:
        return SendResult(
            message_id=message_id,
            ok=True,
            provider_id=body.get("name"),
            status_code=200,
            latency_ms=latency_ms,
        )
    error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
    code = None
    for detail in error.get("details") or ():
        if str(detail.get("@type", "")).endswith("google.firebase.fcm.v1.FcmError"):
            code = detail.get("errorCode")
    if status == 401 and code != "THIRD_PARTY_AUTH_ERROR":
        code = "UNAUTHENTICATED"
    code = code or error.get("status") or f"HTTP{status}"
    entry = classified(FCM_ERRORS, "FCM", code, status)
    token_invalid = None
    if code == "INVALID_ARGUMENT":
        token_invalid = _names_the_token(error)
    return failure(
        message_id,
        entry,
        str(error.get("message", "")),
        status=status,
        retry_after=retry_after,
        latency_ms=latency_ms,
        token_invalid=token_invalid,
    )


class _TokenRequest(google.auth.transport.requests.Request):
    """google-auth's transport with our timeout instead of its 120 s default, and the proxy
    chosen for `token_uri` when the client was built (requests' own reading of the
    environment is off; its CA bundle variables still apply when `ca_file` is not given)."""

    def __init__(self, timeout: float, token_uri: str, ca_file: str | None) -> None:
        session = requests.Session()
        session.trust_env = False
        url = urlsplit(token_uri)
        proxy = proxy_for(f"{url.scheme}://{url.netloc}") if url.hostname else None
        if proxy is not None:
            session.proxies = {url.scheme: proxy.url_with_credentials}
        session.verify = (
            ca_file
            or os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or True
        )
        super().__init__(session)
        self._timeout = timeout

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return super().__call__(
            url, method=method, body=body, headers=headers, timeout=self._timeout, **kwargs
        )


@dataclass
class _Client:
    pool: HTTPPool
    credentials: service_account.Credentials
    builder: BaseAPI
    path: bytes
    token_request: _TokenRequest
    token_lock: asyncio.Lock
    headers: tuple[str, Headers] | None = None  # request headers for the current token

    def request_headers(self, token: str) -> Headers:
        if self.headers is None or self.headers[0] != token:
            pool = self.pool
            self.headers = (
                token,
                (
                    (b":method", b"POST"),
                    (b":scheme", pool.scheme),
                    (b":authority", pool.authority),
                    (b":path", self.path),
                    (b"authorization", f"Bearer {token}".encode("latin-1")),
                    (b"content-type", b"application/json"),
                ),
            )
        return self.headers[1]


SERVICE_ACCOUNT_FIELDS = ("project_id", "client_email", "private_key", "token_uri")


def clean_credentials(values: Mapping[str, Any], *, default_subject: str = "") -> dict[str, Any]:
    """The stored form of FCM credentials: `{"service_account": {...}}` from the
    service-account object or the text of its JSON file (`values` may be the object itself)."""
    account = values.get("service_account", values)
    if isinstance(account, str):
        try:
            account = json.loads(account)
        except json.JSONDecodeError as exc:
            raise CredentialsInvalid(f"The service account is not JSON: {exc}") from exc
    if not isinstance(account, Mapping):
        raise CredentialsInvalid(
            "The service account is not a JSON object, as a service-account file is."
        )
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not account.get(name)]
    if missing:
        raise CredentialsInvalid(f"The service account lacks {', '.join(missing)}.")
    if account.get("type") != "service_account":
        raise CredentialsInvalid(
            'The file is not a service account: its "type" is not "service_account".'
        )
    return {"service_account": dict(account)}


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


def stringify_data(data: Mapping[str, Any]) -> dict[str, str]:
    """FCM data values must be strings: keep strings, JSON-encode everything else."""
    return {
        str(key): value
        if isinstance(value, str)
        else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        for key, value in data.items()
    }


class _Builder(BaseAPI):
    """pyfcm's message builder with its JSON by orjson: the same text (compact, keys sorted,
    UTF-8) for a tenth of the CPU; what orjson refuses, pyfcm's own encoding."""

    def json_dumps(self, data):
        try:
            return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return super().json_dumps(data)


class FCMAdapter(AsyncBatchAdapter):
    """Sends Android pushes through FCM HTTP v1 (or an endpoint given for tests)."""

    channel = "AndroidPush"
    errors = FCM_ERRORS
    secret_fields = ("service_account.private_key",)
    content_schema = object_schema(
        "title, body and data.", {"title": TEXT, "body": TEXT, "data": JSON_OBJECT}
    )
    send_rounds = 4  # two token fetches and two send rounds at most

    def __init__(
        self,
        endpoint: str | None = GOOGLE_ENDPOINT,
        timeout: float = 10.0,
        *,
        max_concurrency: int = 500,
        max_connections: int = 2,
        http1_connections: int = 100,
        ca_file: str | None = None,
    ) -> None:
        """`max_concurrency`, `max_connections`: HTTP/2 streams per connection (if the server
        allows) and connections; `http1_connections`: the bound of keep-alive connections to
        an HTTP/1.1-only endpoint. `ca_file`: CA bundle to verify the endpoint and the token
        URI (default: the system's CAs, and requests' bundle for the token)."""
        self.endpoint = (endpoint or GOOGLE_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.max_connections = max_connections
        self.http1_connections = http1_connections
        self.ca_file = ca_file or None
        self._protocols: dict[str, str] = {}  # endpoint origin -> protocol, for all clients
        super().__init__()

    # The channel's credential schema and what a message looks like on it (used to send
    # and to preview alike): the adapter's own functions.
    clean_credentials = staticmethod(clean_credentials)
    content_of = staticmethod(content_of)

    @classmethod
    def from_settings(cls, settings: Any) -> FCMAdapter:
        return cls(endpoint=getattr(settings, "FCM_ENDPOINT", "") or None)

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        client = self._client(credentials)
        payloads = [self._payload(client, message) for message in messages]
        try:
            token = await self._access_token(client, rejected=None)
        except _TokenError as exc:
            return [exc.result(message.message_id) for message in messages]
        headers = client.request_headers(token)
        answers = await timed_requests(
            client.pool,
            [(headers, payload) for payload in payloads],
            timeout=self.timeout,
            message_ids=[message.message_id for message in messages],
        )
        results = [
            self._result(message, answered)
            for message, answered in zip(messages, answers, strict=True)
        ]
        return await resend_after_renewal(
            results,
            messages,
            FCM_ERRORS,
            partial(self._access_token, client, rejected=token),
            lambda index, renewed: self._send_one(
                client, renewed, messages[index], payloads[index]
            ),
        )

    async def _close_client(self, client: _Client) -> None:
        await client.pool.aclose()
        client.token_request.session.close()

    @staticmethod
    def _payload(client: _Client, message: OutboundMessage) -> bytes:
        shown = content_of(
            title=message.title, body=message.body, data=message.data, part=message.parts
        )
        android: dict[str, Any] = {"priority": "high" if message.priority == "high" else "normal"}
        if message.ttl is not None:
            android["ttl"] = f"{int(message.ttl)}s"
        if message.collapse_id:
            android["collapse_key"] = message.collapse_id
        return client.builder.parse_payload(
            fcm_token=message.token,
            notification_title=shown["title"] or None,
            notification_body=shown["body"] or None,
            data_payload=stringify_data(shown["data"]) or None,
            android_config=android,
        )

    async def _send_one(
        self,
        client: _Client,
        token: str,
        message: OutboundMessage,
        payload: bytes,
    ) -> SendResult:
        headers = client.request_headers(token)
        answered = await timed_request(
            client.pool, headers, payload, timeout=self.timeout, message_id=message.message_id
        )
        return self._result(message, answered)

    @staticmethod
    def _result(
        message: OutboundMessage, answered: tuple[Response, float] | SendResult
    ) -> SendResult:
        if isinstance(answered, SendResult):
            return answered
        (status, response_headers, body), latency_ms = answered
        retry_after = response_headers.get(b"retry-after")
        return classify_fcm(
            message.message_id,
            status,
            parse_json_body(body) if body else None,
            retry_after=parse_retry_after(retry_after),
            latency_ms=latency_ms,
        )

    async def _access_token(self, client: _Client, *, rejected: str | None) -> str:
        """The cached access token; a new one when it expired or is the one FCM `rejected`."""
        credentials = client.credentials
        async with client.token_lock:
            if credentials.valid and credentials.token != rejected:
                return credentials.token
            try:
                # google-auth is synchronous (requests): keep it off the event loop.
                await asyncio.wait_for(
                    asyncio.to_thread(credentials.refresh, client.token_request),
                    self.timeout + 1,
                )
            except TimeoutError as exc:
                raise _TokenError("timeout", "OAuth token request timed out") from exc
            except google.auth.exceptions.TransportError as exc:
                raise _TokenError("network_error", f"OAuth token request failed: {exc}") from exc
            except google.auth.exceptions.RefreshError as exc:
                raise _TokenError("UNAUTHENTICATED", f"OAuth token refused: {exc}") from exc
            return credentials.token

    def _build_client(self, values: Mapping[str, Any]) -> _Client:
        info = values.get("service_account")
        if isinstance(info, str):
            info = json.loads(info)
        if not isinstance(info, Mapping) or not info.get("project_id"):
            raise AdapterConfigurationError(
                "FCM credentials need a service_account with project_id"
            )
        try:
            google_credentials = service_account.Credentials.from_service_account_info(
                dict(info), scopes=SCOPES
            )
        except (ValueError, KeyError) as exc:
            raise AdapterConfigurationError(f"FCM service account is unusable: {exc}") from exc
        try:
            proxy = proxy_for(self.endpoint)
            token_request = _TokenRequest(self.timeout, info["token_uri"], self.ca_file)
        except ValueError as exc:
            raise AdapterConfigurationError(f"FCM proxy setting is unusable: {exc}") from exc
        try:
            pool = HTTPPool(
                self.endpoint,
                timeout=self.timeout,
                max_connections=self.max_connections,
                max_streams=self.max_concurrency,
                http1_connections=self.http1_connections,
                ca_file=self.ca_file,
                proxy=proxy,
                protocols=self._protocols,
            )
        except (ValueError, OSError) as exc:
            raise AdapterConfigurationError(f"FCM endpoint is unusable: {exc}") from exc
        return _Client(
            pool=pool,
            credentials=google_credentials,
            builder=_Builder(credentials=google_credentials, project_id=info["project_id"]),
            path=f"/v1/projects/{info['project_id']}/messages:send".encode(),
            token_request=token_request,
            token_lock=asyncio.Lock(),
        )


class _TokenError(RenewalFailed):
    """No access token: every message of the batch fails temporarily with this code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def result(self, message_id: str) -> SendResult:
        if self.code in FCM_ERRORS:
            error = FCM_ERRORS[self.code]
            return SendResult(
                message_id=message_id,
                ok=False,
                error_code=error.code,
                error_message=self.detail,
                permanent=error.permanent,
            )
        return local_failure(message_id, self.code, self.detail)
