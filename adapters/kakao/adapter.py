"""KakaoTalk AlimTalk through NHN Cloud's Bizmessage API v2.3 (the "dealer").

A batch becomes one `POST {endpoint}/alimtalk/v2.3/appkeys/{app_key}/messages` per template
code and per 1,000 recipients (sorted by message id, so the same batch always makes the same
requests), at most `concurrency` in flight, over one long-lived
`adapters.transport.http_client.HTTPPool` per credential set. Each request carries `X-Secret-Key`
and `X-NC-API-IDEMPOTENCY-KEY`, a digest of its message ids: sent again after a timeout or
a killed worker, the dealer refuses it with -1005 ("the same key was used within the last 10
minutes"), which means the dealer has it. Those messages are then looked up in the dealer's
message list by `senderGroupingKey` (the same key) to learn their provider ids, and count as
sent either way. A request that got no answer in time is looked up the same way at once: what
the dealer lists is sent, the rest fails `timeout` (temporary). Every recipient carries
`recipientGroupingKey` = our message id, so answers, the list and results map back to messages.

The dealer answers each recipient with an API code (0: accepted); whether a number is a
KakaoTalk user is known only later, in the results (`results()`: delivered, failed, resent as
SMS), after which the dealer resends as SMS when the request asked for it (`resendParameter`,
from the credentials' `fallback_send_no`). Without a fallback number the request says
`isResend: false`, so a console default cannot resend behind the credentials' back."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from adapters import registry
from adapters.asyncio_adapter import AsyncBatchAdapter, Batch, timed_request
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult
from adapters.errors import classified, failure, parse_json_body, parse_retry_after
from adapters.kakao import content, credentials, wire
from adapters.kakao.errors import (
    ALL_RECIPIENTS_FAILED,
    BAD_ANSWER,
    FALLBACK_CODES,
    IDEMPOTENCY_KEY_REUSED,
    KAKAO_ERRORS,
    LOCAL_ERRORS,
    MISSING_TEMPLATE_CODE,
    PROVIDER,
    SUCCESS,
    ErrorClass,
)
from adapters.transport.http2_client import Headers
from adapters.transport.http_client import HTTPPool
from adapters.transport.proxy import proxy_for

DEFAULT_ENDPOINT = "https://api-alimtalk.cloud.toast.com"
IDEMPOTENCY_HEADER = b"x-nc-api-idempotency-key"
# How far back the message list is searched for a request the dealer already has (-1005 comes
# within 10 minutes of the key's first use; the margin covers clocks apart).
LOOKUP_WINDOW = datetime.timedelta(minutes=20)
LOOKUP_TIMEOUT = 5.0  # seconds for that search (the batch's time allows one after a request)


class KakaoDealerError(Exception):
    """The dealer refused or did not answer a template list or result query."""

    def __init__(self, message: str, *, code: str | None = None, temporary: bool = True):
        super().__init__(message)
        self.code = code
        self.temporary = temporary


@dataclass
class _Client:
    pool: HTTPPool
    prefix: str  # /alimtalk/v2.3/appkeys/{app_key}
    send_headers: Headers  # POST .../messages, without the idempotency key
    secret_key: bytes
    sender_key: str
    fallback_send_no: str | None


class KakaoAdapter(AsyncBatchAdapter):
    """Sends AlimTalk through NHN Cloud, reads its template list and its delivery results."""

    channel = "KakaoTalk"
    errors: Mapping[str, ErrorClass] = KAKAO_ERRORS
    secret_fields = ("secret_key",)
    content_schema = content.CONTENT_SCHEMA
    send_rounds = 2

    def __init__(
        self,
        endpoint: str | None = DEFAULT_ENDPOINT,
        timeout: float = 20.0,
        *,
        concurrency: int = 4,
        ca_file: str | None = None,
    ) -> None:
        """`timeout`: seconds one request (of up to 1,000 recipients) may take;
        `concurrency`: requests in flight at once per batch (and keep-alive connections per
        credential set); `ca_file`: CA bundle to verify the endpoint (default: the system's)."""
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self.concurrency = max(1, int(concurrency))
        self.ca_file = ca_file or None
        self._protocols: dict[str, str] = {}
        super().__init__()

    @classmethod
    def from_settings(cls, settings: Any) -> KakaoAdapter:
        return cls(
            endpoint=getattr(settings, "KAKAO_ENDPOINT", "") or None,
            timeout=float(getattr(settings, "KAKAO_TIMEOUT", 20.0)),
            concurrency=int(getattr(settings, "KAKAO_CONCURRENCY", 4)),
        )

    # The channel's credential schema and what a message looks like on it (used to send
    # and to preview alike): the adapter's own functions.
    clean_credentials = staticmethod(credentials.clean_credentials)
    content_of = staticmethod(content.content_of)

    def templates(self, credentials: Credentials) -> list[dict[str, Any]]:
        """Every template of the credentials' sender key (all pages), normalized:
        `{"template_code", "name", "text", "variables", "buttons", "status", "details"}`.
        Raises KakaoDealerError, or AdapterConfigurationError for unusable credentials."""
        return registry.run_in_loop(self._templates(credentials), timeout=self._query_deadline())

    def results(
        self,
        credentials: Credentials,
        *,
        since: datetime.datetime,
        until: datetime.datetime,
    ) -> list[dict[str, Any]]:
        """The dealer's result updates between `since` and `until` (whole minutes, all
        pages), each normalized by `wire.normalize_result`. Raises KakaoDealerError."""
        return registry.run_in_loop(
            self._results(credentials, since, until), timeout=self._query_deadline()
        )

    def _query_deadline(self) -> float:
        return 30 * self.timeout + 30

    # -- sending --

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        client = self._client(credentials)
        missing = LOCAL_ERRORS[MISSING_TEMPLATE_CODE]
        groups: dict[str, list[int]] = {}
        unsendable: list[int] = []
        for index, message in enumerate(messages):
            code = (message.parts or {}).get("template_code")
            if isinstance(code, str) and code:
                groups.setdefault(code, []).append(index)
            else:
                unsendable.append(index)
        # One request per template code and 1,000 recipients, known by its first index: the
        # batch's workers take requests, and what is not started by the deadline fails
        # `timeout` (Batch.finish).
        requests: dict[int, tuple[str, list[int]]] = {}
        for code, indexes in groups.items():
            indexes.sort(key=lambda index: messages[index].message_id)
            for start in range(0, len(indexes), wire.MAX_RECIPIENTS):
                chunk = indexes[start : start + wire.MAX_RECIPIENTS]
                requests[chunk[0]] = (code, chunk)
        batch = self._batch(messages, todo=requests)
        for index in unsendable:
            batch.results[index] = failure(messages[index].message_id, missing)
        if not requests:
            return batch.finish()

        async def worker(batch: Batch) -> None:
            while (first := batch.take()) is not None:
                code, indexes = requests[first]
                chunk = [messages[index] for index in indexes]
                answers = await self._send_request(client, code, chunk)
                for index, answer in zip(indexes, answers, strict=True):
                    batch.results[index] = answer

        return await self._run_workers(batch, worker, self.concurrency)

    async def _send_request(
        self, client: _Client, template_code: str, messages: list[OutboundMessage]
    ) -> list[SendResult]:
        key = wire.idempotency_key(m.message_id for m in messages)
        body = wire.encode(
            {
                "senderKey": client.sender_key,
                "templateCode": template_code,
                "senderGroupingKey": key,
                "recipientList": [self._recipient(client, m) for m in messages],
            }
        )
        headers = (*client.send_headers, (IDEMPOTENCY_HEADER, key.encode("ascii")))
        answered = await timed_request(
            client.pool, headers, body, timeout=self.timeout, message_id=messages[0].message_id
        )
        if isinstance(answered, SendResult):
            if answered.error_code == "timeout":
                return await self._unanswered(client, key, messages, answered)
            return [replace(answered, message_id=m.message_id) for m in messages]
        (status, response_headers, raw), latency_ms = answered
        answer = parse_json_body(raw)
        code, text, successful = wire.header_of(answer)
        retry_after = parse_retry_after(response_headers.get(b"retry-after"))
        if code == IDEMPOTENCY_KEY_REUSED:
            return await self._already_sent(client, key, messages, status, latency_ms)
        sent = (answer or {}).get("message")
        send_results = sent.get("sendResults") if isinstance(sent, Mapping) else None
        has_results = isinstance(send_results, list) and bool(send_results)
        if status == 200 and has_results and (successful or code == ALL_RECIPIENTS_FAILED):
            return _per_recipient(
                messages, sent, send_results, client.fallback_send_no, status, latency_ms
            )
        if status < 300 and (successful or code is None):
            # Accepted but naming no recipient, or unreadable: temporary, since sending it
            # again under the same key cannot deliver twice.
            error = LOCAL_ERRORS[BAD_ANSWER]
            return [
                failure(m.message_id, error, status=status, latency_ms=latency_ms) for m in messages
            ]
        error = classified(KAKAO_ERRORS, PROVIDER, _code(code, status), status)
        if status == 429 or status >= 500:
            error = replace(error, permanent=False, token_invalid=False)
        return [
            failure(
                m.message_id,
                error,
                text,
                status=status,
                retry_after=retry_after,
                latency_ms=latency_ms,
            )
            for m in messages
        ]

    def _recipient(self, client: _Client, message: OutboundMessage) -> dict[str, Any]:
        part = message.parts or {}
        shown = content.content_of(
            title=message.title,
            body=message.body,
            data=message.data,
            part=part,
            credentials={"fallback_send_no": client.fallback_send_no},
        )
        recipient: dict[str, Any] = {"recipientNo": content.recipient_no(message.token)}
        if shown["variables"]:
            recipient["templateParameter"] = shown["variables"]
        buttons = content.recipient_buttons(shown["buttons"])
        if buttons:
            recipient["buttons"] = buttons
        resend = shown["resend"]
        if resend is not None and content.is_international(message.token):
            resend = content.resend_parameter(
                text=shown["fallback_text"] or message.body or "",
                title=message.title,
                send_no=resend["resendSendNo"],
                international=True,
            )
        recipient["resendParameter"] = resend if resend is not None else {"isResend": False}
        if len(message.message_id) <= wire.MAX_GROUPING_KEY:
            recipient["recipientGroupingKey"] = message.message_id
        return recipient

    async def _already_sent(
        self,
        client: _Client,
        key: str,
        messages: list[OutboundMessage],
        status: int,
        latency_ms: float,
    ) -> list[SendResult]:
        """The dealer has this request from an earlier try: its messages count as sent, with
        the provider ids the message list gives them (None where it gives none)."""
        found = await self._sent_under(client, key, timeout=min(self.timeout, LOOKUP_TIMEOUT))
        error = KAKAO_ERRORS[str(IDEMPOTENCY_KEY_REUSED)]
        return [
            SendResult(
                message_id=m.message_id,
                ok=True,
                provider_id=found.get(m.message_id),
                status_code=status,
                error_code=error.code,
                error_message="already sent: the dealer has this request (key reused)",
                latency_ms=latency_ms,
            )
            for m in messages
        ]

    async def _unanswered(
        self, client: _Client, key: str, messages: list[OutboundMessage], timed_out: SendResult
    ) -> list[SendResult]:
        """A request without an answer in time may still have been taken: the messages the
        dealer lists under its key are sent; the others fail `timeout` (temporary), and their
        retry, under the same key when it is the same request, cannot deliver twice."""
        found = await self._sent_under(client, key, timeout=min(self.timeout, LOOKUP_TIMEOUT))
        return [
            SendResult(
                message_id=m.message_id,
                ok=True,
                provider_id=found[m.message_id],
                error_message="no answer in time; found in the dealer's message list",
                latency_ms=timed_out.latency_ms,
            )
            if m.message_id in found
            else replace(timed_out, message_id=m.message_id)
            for m in messages
        ]

    async def _sent_under(self, client: _Client, key: str, *, timeout: float) -> dict[str, str]:
        """message id -> provider id of the recipients the dealer's message list shows under
        this idempotency key (`senderGroupingKey`); empty when the list cannot be read."""
        now = datetime.datetime.now(datetime.UTC)
        query = {
            "senderGroupingKey": key,
            "startRequestDate": wire.dealer_date(now - LOOKUP_WINDOW),
            "endRequestDate": wire.dealer_date(now + datetime.timedelta(minutes=1), round_up=True),
            "pageSize": wire.PAGE_SIZE,
        }
        try:
            listed = await self._get_pages(
                client, "/messages", query, _listed_messages, timeout=timeout
            )
        except (KakaoDealerError, AdapterConfigurationError):
            return {}
        found = {}
        for entry in listed:
            grouping = entry.get("recipientGroupingKey")
            if grouping and entry.get("requestId") is not None:
                found[grouping] = f"{entry['requestId']}:{entry.get('recipientSeq')}"
        return found

    # -- reading --

    async def _templates(self, credentials: Credentials) -> list[dict[str, Any]]:
        client = self._client(credentials)
        path = f"/senders/{quote(client.sender_key, safe='')}/templates"
        raw = await self._get_pages(client, path, {"pageSize": wire.PAGE_SIZE}, _listed_templates)
        return [wire.normalize_template(template) for template in raw]

    async def _results(
        self, credentials: Credentials, since: datetime.datetime, until: datetime.datetime
    ) -> list[dict[str, Any]]:
        client = self._client(credentials)
        query = {
            "startUpdateDate": wire.dealer_date(since),
            "endUpdateDate": wire.dealer_date(until, round_up=True),
            "pageSize": wire.PAGE_SIZE,
        }
        raw = await self._get_pages(client, "/message-results", query, _listed_results)
        return [wire.normalize_result(result) for result in raw]

    async def _get_pages(
        self,
        client: _Client,
        path: str,
        query: dict[str, Any],
        items,
        *,
        timeout: float | None = None,
    ) -> list:
        """Every page of a list: `items(answer)` gives a page's entries and the total count
        (None when the dealer gives none: then a short page is the last)."""
        collected: list = []
        page = 1
        while True:
            answer = await self._get(client, path, {**query, "pageNum": page}, timeout=timeout)
            entries, total = items(answer)
            collected.extend(entries)
            if not entries or len(entries) < query["pageSize"]:
                return collected
            if total is not None and len(collected) >= total:
                return collected
            page += 1

    async def _get(
        self,
        client: _Client,
        path: str,
        query: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        target = f"{client.prefix}{path}?{urlencode(query, quote_via=quote)}"
        headers: Headers = (
            (b":method", b"GET"),
            (b":scheme", client.pool.scheme),
            (b":authority", client.pool.authority),
            (b":path", target.encode("ascii")),
            (b"x-secret-key", client.secret_key),
            (b"content-type", b"application/json;charset=UTF-8"),
            (b"accept", b"application/json"),
        )
        answered = await timed_request(
            client.pool, headers, b"", timeout=timeout or self.timeout, message_id=""
        )
        if isinstance(answered, SendResult):
            raise KakaoDealerError(
                f"GET {path}: {answered.error_message}", code=answered.error_code
            )
        (status, _headers, raw), _latency = answered
        answer = parse_json_body(raw)
        code, text, successful = wire.header_of(answer)
        if status == 200 and successful and answer is not None:
            return answer
        error = classified(KAKAO_ERRORS, PROVIDER, _code(code, status), status)
        message = f"GET {path}: {status} {error.code} {text or error.meaning}"
        if error.credential_rejected:
            raise AdapterConfigurationError(f"KakaoTalk credentials refused: {message}")
        raise KakaoDealerError(message, code=error.code, temporary=not error.permanent)

    def _build_client(self, values: Mapping[str, Any]) -> _Client:
        try:
            cleaned = credentials.clean_credentials(values)
        except ValueError as exc:
            raise AdapterConfigurationError(str(exc)) from exc
        try:
            proxy = proxy_for(self.endpoint)
        except ValueError as exc:
            raise AdapterConfigurationError(f"KakaoTalk proxy setting is unusable: {exc}") from exc
        try:
            pool = HTTPPool(
                self.endpoint,
                timeout=self.timeout,
                max_connections=1,
                max_streams=self.concurrency * 4,
                http1_connections=self.concurrency * 2,
                ca_file=self.ca_file,
                proxy=proxy,
                protocols=self._protocols,
                never_indexed=(IDEMPOTENCY_HEADER,),
            )
        except (ValueError, OSError) as exc:
            raise AdapterConfigurationError(f"KakaoTalk endpoint is unusable: {exc}") from exc
        prefix = f"{wire.API}/{quote(cleaned['app_key'], safe='')}"
        secret = cleaned["secret_key"].encode("utf-8")
        send_headers: Headers = (
            (b":method", b"POST"),
            (b":scheme", pool.scheme),
            (b":authority", pool.authority),
            (b":path", f"{prefix}/messages".encode("ascii")),
            (b"x-secret-key", secret),
            (b"content-type", b"application/json;charset=UTF-8"),
            (b"accept", b"application/json"),
        )
        return _Client(
            pool=pool,
            prefix=prefix,
            send_headers=send_headers,
            secret_key=secret,
            sender_key=cleaned["sender_key"],
            fallback_send_no=cleaned.get("fallback_send_no"),
        )


def _per_recipient(
    messages: list[OutboundMessage],
    sent: Mapping[str, Any],
    send_results: list,
    fallback_send_no: str | None,
    status: int,
    latency_ms: float,
) -> list[SendResult]:
    """One result per message from the dealer's `sendResults`, matched by
    `recipientGroupingKey` (else by position)."""
    request_id = sent.get("requestId")
    position = {m.message_id: index for index, m in enumerate(messages)}
    answers: list[SendResult | None] = [None] * len(messages)
    for order, entry in enumerate(send_results):
        if not isinstance(entry, Mapping):
            continue
        index = position.get(entry.get("recipientGroupingKey"), order)
        if index >= len(messages) or answers[index] is not None:
            continue
        message_id = messages[index].message_id
        seq = entry.get("recipientSeq")
        provider_id = f"{request_id}:{seq}" if request_id and seq is not None else None
        try:
            code = int(entry.get("resultCode"))
        except (TypeError, ValueError):
            code = None
        if code == SUCCESS:
            answers[index] = SendResult(
                message_id=message_id,
                ok=True,
                provider_id=provider_id,
                status_code=status,
                latency_ms=latency_ms,
            )
            continue
        code_text = str(code) if code is not None else BAD_ANSWER
        if fallback_send_no and code_text in FALLBACK_CODES:
            # Not an AlimTalk reader, but the request asked for the SMS fallback: the dealer
            # resends, and the results say how that went.
            answers[index] = SendResult(
                message_id=message_id,
                ok=True,
                provider_id=provider_id,
                status_code=status,
                error_code=code_text,
                error_message=f"{KAKAO_ERRORS[code_text].meaning}: resent as SMS",
                latency_ms=latency_ms,
            )
            continue
        error = classified(KAKAO_ERRORS, PROVIDER, code_text, status)
        refused = failure(message_id, error, str(entry.get("resultMessage") or ""), status=status)
        answers[index] = replace(refused, provider_id=provider_id, latency_ms=latency_ms)
    missing = LOCAL_ERRORS[BAD_ANSWER]
    return [
        answer
        if answer is not None
        else failure(m.message_id, missing, status=status, latency_ms=latency_ms)
        for m, answer in zip(messages, answers, strict=True)
    ]


def _code(code: int | None, status: int) -> str:
    """The dealer's `header.resultCode`, or `HTTP<status>` when the answer has none."""
    return str(code) if code is not None else f"HTTP{status}"


def _listed_messages(answer: Mapping[str, Any]) -> tuple[list, int | None]:
    body = answer.get("messageSearchResultResponse") or {}
    return list(body.get("messages") or []), body.get("totalCount")


def _listed_templates(answer: Mapping[str, Any]) -> tuple[list, int | None]:
    body = answer.get("templateListResponse") or {}
    return list(body.get("templates") or []), body.get("totalCount")


def _listed_results(answer: Mapping[str, Any]) -> tuple[list, int | None]:
    return list(answer.get("messages") or []), None
