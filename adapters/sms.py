"""SMS through Twilio's Messages API (or any gateway that speaks it), and the signature of
Twilio's webhooks.

Each message is one `POST {endpoint}/2010-04-01/Accounts/{account_sid}/Messages.json`, Basic
auth `account_sid:auth_token`, form fields `To`, `From` and/or `MessagingServiceSid`, `Body`
and, when the message has one, `StatusCallback`. A batch goes out as at most `concurrency`
requests in flight, over one long-lived `adapters.transport.http_client.HTTPPool` per credential set
(keep-alive; HTTP/2 where the server offers it; `HTTPS_PROXY` / `NO_PROXY` read when the pool
is built). Twilio answers 201 with the Message resource (its `sid` becomes the provider id),
or an error body `{"code", "message", "more_info", "status"}` that `TWILIO_ERRORS` maps.

Two answers stop the rest of a batch without sending it, each unsent message getting the same
temporary result: 20003 (the account's credentials were refused: every request would be) and
a full round of requests without any answer (the endpoint is down: every request would wait
for its timeout).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote_plus, urlsplit, urlunsplit

from adapters.asyncio_adapter import AsyncBatchAdapter, Batch, timed_request
from adapters.base import (
    TEXT,
    AdapterConfigurationError,
    Credentials,
    CredentialsInvalid,
    OutboundMessage,
    SendResult,
    credential_fields_allowed,
    credential_text,
    object_schema,
)
from adapters.errors import (
    ErrorClass,
    classified,
    error_table,
    failure,
    local_failure,
    parse_retry_after,
)
from adapters.sms_text import segments
from adapters.transport.http2_client import Headers
from adapters.transport.http_client import HTTPPool
from adapters.transport.proxy import proxy_for

TWILIO_ENDPOINT = "https://api.twilio.com"
API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (21617)
AUTHENTICATION_FAILED = "20003"


# (code, HTTP status, permanent, token_invalid, credential_rejected, meaning).
# An address Twilio calls invalid, not a mobile or unsubscribed (STOP) disables the
# subscription. A refused account credential is temporary: the operator fixes it and the
# message is still good (there is nothing to renew, so a batch stops at the first one).
# Rate limits and Twilio's own failures are retried; any other 4xx fails the message.
TWILIO_ERRORS: dict[str, ErrorClass] = error_table(
    "Twilio",
    [
        ("20003", 401, False, False, True, "authentication failed: account sid or auth token"),
        ("20404", 404, True, False, False, "the requested resource was not found"),
        ("20429", 429, False, False, False, "too many requests"),
        ("20500", 500, False, False, False, "Twilio internal error"),
        ("20503", 503, False, False, False, "Twilio service unavailable"),
        ("21211", 400, True, True, False, "the 'To' number is not a valid phone number"),
        ("21408", 400, True, False, False, "SMS to this region is not enabled on the account"),
        ("21602", 400, True, False, False, "the message body is required"),
        ("21603", 400, True, False, False, "a 'From' number is required"),
        ("21604", 400, True, False, False, "a 'To' number is required"),
        ("21606", 400, True, False, False, "'From' is not an SMS-capable number of the account"),
        ("21610", 400, True, True, False, "the recipient unsubscribed (replied STOP)"),
        ("21612", 400, True, False, False, "the 'To' number is not reachable via SMS now"),
        ("21614", 400, True, True, False, "the 'To' number is not a mobile number"),
        ("21617", 400, True, False, False, "the body exceeds 1600 characters"),
    ],
)


def classify_twilio(
    message_id: str,
    status: int,
    body: Mapping[str, Any] | None,
    *,
    retry_after: float | None = None,
    latency_ms: float | None = None,
) -> SendResult:
    """The result of one Messages API answer: its HTTP status and parsed JSON body (None if
    not JSON). The error code is Twilio's `code`, or `HTTP<status>` when the body has none."""
    body = body or {}
    if 200 <= status < 300:
        sid = body.get("sid")
        return SendResult(
            message_id=message_id,
            ok=True,
            provider_id=sid if isinstance(sid, str) else None,
            status_code=status,
            latency_ms=latency_ms,
        )
    code = body.get("code")
    code = str(code) if isinstance(code, int | str) and str(code).isdigit() else f"HTTP{status}"
    message = body.get("message")
    return failure(
        message_id,
        classified(TWILIO_ERRORS, "Twilio", code, status),
        str(message) if message else "",
        status=status,
        retry_after=retry_after,
        latency_ms=latency_ms,
    )


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """`X-Twilio-Signature` of a webhook request: base64 of HMAC-SHA1, keyed by the auth
    token, over the full URL (query string included) followed by each POST parameter's name
    and value, sorted by name."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_valid(
    auth_token: str, url: str, params: Mapping[str, str], signature: str | None
) -> bool:
    """Whether `signature` (the request's `X-Twilio-Signature`) signs this URL and these POST
    parameters, compared in constant time. The URL is also tried with its default port added
    or removed, as Twilio's own validators do (a proxy in front may change which one the
    application sees)."""
    if not signature:
        return False
    given = signature.encode()
    valid = False
    for candidate in _url_variants(url):
        expected = twilio_signature(auth_token, candidate, params).encode()
        valid |= hmac.compare_digest(expected, given)
    return valid


def _url_variants(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None or not parts.hostname:
        return (url,)
    netloc = parts.netloc.rpartition("@")[2]
    userinfo = parts.netloc[: len(parts.netloc) - len(netloc)]
    host = netloc.rsplit(":", 1)[0] if parts.port is not None else netloc
    if parts.port not in (None, default):
        return (url,)
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{default}"))
    without_port = urlunsplit(parts._replace(netloc=f"{userinfo}{host}"))
    return (url, without_port if parts.port is not None else with_port)


# --- Credentials and content ---------------------------------------------------------------

CREDENTIAL_FIELDS = ("account_sid", "auth_token", "from", "messaging_service_sid")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Twilio's alphanumeric sender ids: up to 11 letters, digits and spaces, at least one letter.
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


def clean_credentials(values: Mapping[str, Any], *, default_subject: str = "") -> dict[str, Any]:
    """A Twilio account (or a gateway speaking its API): account sid, auth token, and either
    a sender (`from`: an E.164 number or an alphanumeric sender id) or a messaging service."""
    credential_fields_allowed(values, CREDENTIAL_FIELDS, "SMS")
    cleaned = {
        "account_sid": credential_text(values, "account_sid", "SMS"),
        "auth_token": credential_text(values, "auth_token", "SMS"),
    }
    sender = credential_text(values, "from", "SMS", required=False)
    service = credential_text(values, "messaging_service_sid", "SMS", required=False)
    if bool(sender) == bool(service):
        raise CredentialsInvalid(
            'SMS credentials need exactly one of "from" and "messaging_service_sid".'
        )
    if sender:
        if not (_E164.match(sender) or _ALPHANUMERIC_SENDER.match(sender)):
            raise CredentialsInvalid(
                'SMS "from" must be an E.164 number (+15005550006) or an alphanumeric sender id.'
            )
        cleaned["from"] = sender
    else:
        cleaned["messaging_service_sid"] = service
    return cleaned


def text_of(*, body: str, part: Mapping[str, Any]) -> str:
    """The text an SMS sends: the part's `text`, else the body."""
    text = part.get("text")
    return text if isinstance(text, str) and text else body or ""


def content_of(
    *,
    title: str,
    body: str,
    data: Mapping[str, Any],
    part: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What an SMS of this content says (`text_of`, which the adapter sends) and what it
    costs: its encoding and number of segments."""
    text = text_of(body=body, part=part)
    encoding, count = segments(text)
    return {"text": text, "encoding": encoding, "segments": count}


# Twilio refuses a Body over 1,600 characters; ten segments is the most it concatenates.
MAX_SEGMENTS = 10


def content_problem(*, body: str, part: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, message) when the text an SMS of this content sends (`content_of`) takes more
    than MAX_SEGMENTS segments, the field being `sms.text` or `body` (where the text comes
    from); None when it fits."""
    content = content_of(title="", body=body, data={}, part=part)
    if content["segments"] <= MAX_SEGMENTS:
        return None
    field = "sms.text" if part.get("text") else "body"
    return field, (
        f"The SMS text ({field}) takes {content['segments']} segments of "
        f"{content['encoding']}; the limit is {MAX_SEGMENTS} (1,530 GSM-7 characters, or 670 "
        "in UCS-2, which any character outside the GSM alphabet brings in)."
    )


# --- The adapter -----------------------------------------------------------------------------

_SID = re.compile(r"^[A-Za-z0-9]+$")
_SID_FIELD = re.compile(rb'"sid"\s*:\s*"([A-Za-z0-9]+)"')  # the resource's own, not account_sid


def _form_number(token: str) -> bytes:
    """`token` form-encoded: an E.164 number is `%2B` and its digits."""
    if token[:1] == "+" and token[1:].isdigit() and token.isascii():
        return b"%2B" + token[1:].encode("ascii")
    return quote_plus(token).encode("ascii")


@dataclass
class _Client:
    pool: HTTPPool
    headers: Headers
    sender: bytes  # the form's `From` / `MessagingServiceSid` fields, encoded once


class TwilioSMSAdapter(AsyncBatchAdapter):
    """Sends SMS through Twilio's Messages API, one request per recipient.

    A batch starts no request after `send_rounds - 1` timeouts: what is unsent then fails
    `timeout` (temporary) and goes back to the queue, and the batch as a whole ends within
    `send_rounds` timeouts (each request has its own), inside the delivery task's soft limit."""

    channel = "SMS"
    errors = TWILIO_ERRORS
    secret_fields = ("auth_token",)
    content_schema = object_schema(
        "the text (sms.text or body), its encoding and its number of segments.",
        {
            "text": TEXT,
            "encoding": {"type": "string", "enum": ["GSM-7", "UCS-2"]},
            "segments": {"type": "integer", "minimum": 0},
        },
    )
    send_rounds = 7

    def __init__(
        self,
        endpoint: str | None = TWILIO_ENDPOINT,
        timeout: float = 10.0,
        *,
        concurrency: int = 50,
        ca_file: str | None = None,
    ) -> None:
        """`concurrency`: requests in flight at once per batch (and the bound of keep-alive
        connections per credential set); `ca_file`: CA bundle to verify the endpoint (default:
        the system's CAs)."""
        self.endpoint = (endpoint or TWILIO_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self.concurrency = max(1, int(concurrency))
        self.ca_file = ca_file or None
        self._protocols: dict[str, str] = {}  # endpoint origin -> protocol, for all clients
        super().__init__()

    # The channel's credential schema and what a message looks like on it (used to send
    # and to preview alike): the adapter's own functions.
    clean_credentials = staticmethod(clean_credentials)
    content_of = staticmethod(content_of)

    @classmethod
    def content_problem(cls, *, body: str, part: Mapping[str, Any]) -> tuple[str, str] | None:
        """(field, message) when an SMS of this content would take too many segments."""
        return content_problem(body=body, part=part)

    @classmethod
    def from_settings(cls, settings: Any) -> TwilioSMSAdapter:
        return cls(
            endpoint=getattr(settings, "SMS_ENDPOINT", "") or None,
            timeout=float(getattr(settings, "SMS_TIMEOUT", 10.0)),
            concurrency=int(getattr(settings, "SMS_CONCURRENCY", 50)),
        )

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        client = self._client(credentials)
        batch = self._batch(messages)
        results = batch.results
        unanswered = 0  # requests in a row that got no answer

        async def worker(batch: Batch) -> None:
            nonlocal unanswered
            while (index := batch.take()) is not None:
                result = results[index] = await self._send_one(client, messages[index])
                if result.status_code is None and not result.permanent:  # no answer
                    unanswered += 1
                    if unanswered >= self.concurrency:
                        batch.stop(partial(_unsent, result))
                elif result.status_code is not None:
                    unanswered = 0
                    if result.error_code == AUTHENTICATION_FAILED:
                        batch.stop(partial(_unsent, result))

        return await self._run_workers(batch, worker, self.concurrency)

    async def _send_one(self, client: _Client, message: OutboundMessage) -> SendResult:
        text = text_of(body=message.body, part=message.parts or {})
        if len(text) > MAX_BODY_CHARS:
            return local_failure(
                message.message_id,
                "payload_too_large",
                f"SMS body of {len(text)} characters; Twilio takes at most {MAX_BODY_CHARS}",
            )
        form = b"%s&To=%s&Body=%s" % (
            client.sender,
            _form_number(message.token),
            quote_plus(text).encode("ascii"),
        )
        if message.status_callback:
            form += b"&StatusCallback=" + quote_plus(message.status_callback).encode("ascii")
        answered = await timed_request(
            client.pool, client.headers, form, timeout=self.timeout, message_id=message.message_id
        )
        if isinstance(answered, SendResult):
            return answered
        (status, response_headers, body), latency_ms = answered
        if status == 201:
            # The common case, without parsing the whole Message resource for its sid.
            found = _SID_FIELD.search(body)
            if found is not None:
                return SendResult(
                    message_id=message.message_id,
                    ok=True,
                    provider_id=found.group(1).decode("ascii"),
                    status_code=201,
                    latency_ms=latency_ms,
                )
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
        return classify_twilio(
            message.message_id,
            status,
            parsed if isinstance(parsed, dict) else None,
            retry_after=parse_retry_after(response_headers.get(b"retry-after")),
            latency_ms=latency_ms,
        )

    def _build_client(self, values: Mapping[str, Any]) -> _Client:
        account_sid = values.get("account_sid")
        auth_token = values.get("auth_token")
        sender = values.get("from")
        service = values.get("messaging_service_sid")
        if not isinstance(account_sid, str) or not _SID.match(account_sid):
            raise AdapterConfigurationError("Twilio credentials need an account_sid")
        if not isinstance(auth_token, str) or not auth_token:
            raise AdapterConfigurationError("Twilio credentials need an auth_token")
        fields = []
        if isinstance(service, str) and service:
            fields.append(b"MessagingServiceSid=" + quote_plus(service).encode("ascii"))
        if isinstance(sender, str) and sender:
            fields.append(b"From=" + quote_plus(sender).encode("ascii"))
        if not fields or (service is not None and not isinstance(service, str)):
            raise AdapterConfigurationError(
                "Twilio credentials need a 'from' number or a 'messaging_service_sid'"
            )
        try:
            proxy = proxy_for(self.endpoint)
        except ValueError as exc:
            raise AdapterConfigurationError(f"SMS proxy setting is unusable: {exc}") from exc
        try:
            pool = HTTPPool(
                self.endpoint,
                timeout=self.timeout,
                max_connections=1,
                max_streams=self.concurrency,
                http1_connections=self.concurrency,
                ca_file=self.ca_file,
                proxy=proxy,
                protocols=self._protocols,
            )
        except (ValueError, OSError) as exc:
            raise AdapterConfigurationError(f"SMS endpoint is unusable: {exc}") from exc
        basic = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        headers: Headers = (
            (b":method", b"POST"),
            (b":scheme", pool.scheme),
            (b":authority", pool.authority),
            (b":path", path.encode("ascii")),
            (b"authorization", f"Basic {basic}".encode("ascii")),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"accept", b"application/json"),
        )
        return _Client(pool=pool, headers=headers, sender=b"&".join(fields))


def _unsent(cause: SendResult, message_id: str) -> SendResult:
    """A message the batch did not send (no request, so no status), failing temporarily with
    the code of the answer that stopped it."""
    return SendResult(
        message_id=message_id,
        ok=False,
        error_code=cause.error_code,
        error_message=f"not sent: {cause.error_message}",
        permanent=False,
        retry_after=cause.retry_after,
    )
