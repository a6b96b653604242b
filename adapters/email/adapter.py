"""`EmailAdapter`: a batch's messages prepared, then sent by one worker per connection."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiosmtplib

from adapters.asyncio_adapter import AsyncBatchAdapter, Batch
from adapters.base import (
    TEXT,
    AdapterConfigurationError,
    Credentials,
    OutboundMessage,
    SendResult,
    object_schema,
)
from adapters.email.content import (
    BLANK_OR_CONTROL,
    MESSAGE_ID_PART,
    ContentBuilder,
    Dates,
    HeaderInjection,
    NoSkeleton,
    build_content,
    content_of,
    plain_address,
    recipient_headers,
)
from adapters.email.credentials import SECRET_FIELDS, clean_credentials
from adapters.email.errors import EMAIL_LOCAL_ERRORS, classify_smtp, email_failure, enhanced_status
from adapters.email.pool import Relay, SetupError, SMTPPool

logger = logging.getLogger(__name__)


@dataclass
class _Client:
    pool: SMTPPool
    relay: Relay
    values: Mapping[str, Any]  # the credentials as stored
    contents: ContentBuilder


@dataclass(slots=True)
class _Outgoing:
    message_id: str
    rcpt_to: bytes  # RCPT's argument, b"TO:<address>"
    data: bytes
    provider_id: str
    retried: bool = False


class EmailAdapter(AsyncBatchAdapter):
    """Sends e-mail through each application's SMTP relay."""

    channel = "Email"
    errors = EMAIL_LOCAL_ERRORS
    secret_fields = SECRET_FIELDS
    content_schema = object_schema(
        "the subject (email.subject or title), the text part (body), the HTML part and the "
        "sender's name (email.from_name or the credentials').",
        {"subject": TEXT, "text": TEXT, "html": TEXT, "from_name": TEXT},
    )
    send_rounds = 4  # a batch's deadline: 4 timeouts, then unsent messages fail `timeout`
    content_cache_size = 256

    def __init__(
        self,
        *,
        timeout: float = 20.0,
        connections_per_relay: int = 4,
        ca_file: str | None = None,
        helo_name: str | None = None,
    ) -> None:
        """`timeout`: seconds per SMTP command or connection attempt; `ca_file`: a CA bundle
        to verify relays' TLS with (default: the system's CAs); `helo_name`: EHLO's name
        (default: this host's FQDN)."""
        self.timeout = timeout
        self.connections_per_relay = max(1, connections_per_relay)
        self.ca_file = ca_file or None
        self.helo_name = helo_name
        self._dates = Dates()
        super().__init__()

    # The channel's credential schema and what a message looks like on it (used to send
    # and to preview alike): the adapter's own functions.
    clean_credentials = staticmethod(clean_credentials)
    content_of = staticmethod(content_of)

    @classmethod
    def from_settings(cls, settings: Any) -> EmailAdapter:
        return cls(
            timeout=float(getattr(settings, "EMAIL_TIMEOUT", 20.0)),
            connections_per_relay=int(getattr(settings, "EMAIL_CONNECTIONS_PER_RELAY", 4)),
            ca_file=getattr(settings, "SMTP_CA_FILE", "") or None,
        )

    def _build_client(self, values: Mapping[str, Any]) -> _Client:
        relay = Relay.from_values(values)
        tls_context = None
        if relay.security != "none":
            try:
                tls_context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise AdapterConfigurationError(f"SMTP_CA_FILE is unusable: {exc}") from exc
        pool = SMTPPool(
            relay,
            size=self.connections_per_relay,
            timeout=self.timeout,
            tls_context=tls_context,
            helo_name=self.helo_name or _local_fqdn(),
        )
        return _Client(
            pool=pool,
            relay=relay,
            values=values,
            contents=ContentBuilder(relay.from_address, self.content_cache_size),
        )

    async def _send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        if self.helo_name is None:
            self.helo_name = await asyncio.to_thread(_local_fqdn)
        client = self._client(credentials)
        date = self._dates.now()
        outgoing = [self._prepare(client, message, date) for message in messages]
        todo = [i for i, prepared in enumerate(outgoing) if isinstance(prepared, _Outgoing)]
        batch = self._batch(messages, todo)
        for index, prepared in enumerate(outgoing):
            if isinstance(prepared, SendResult):
                batch.results[index] = prepared
        if not todo:
            return batch.finish()
        # One worker per connection the pool allows; the ones still in a transaction when the
        # batch's time is up are cancelled (their message fails `timeout`).
        return await self._run_workers(
            batch,
            partial(self._worker, client.pool, outgoing),
            client.pool.size,
            time_limit=self.send_rounds * self.timeout,
        )

    def _prepare(
        self, client: _Client, message: OutboundMessage, date: str
    ) -> _Outgoing | SendResult:
        """The message on the wire, or its refusal."""
        to = plain_address(message.token)
        if to is None:
            token = message.token if isinstance(message.token, str) else ""
            # Without an @, or with blanks or controls, it can never be an address.
            hopeless = "@" not in token or bool(BLANK_OR_CONTROL.search(token))
            return email_failure(
                message.message_id,
                "invalid_address",
                "the address is not a plain ASCII e-mail address",
                token_invalid=hopeless,
            )
        relay = client.relay
        shown = content_of(
            title=message.title,
            body=message.body,
            data=message.data,
            part=message.parts or {},
            credentials=client.values,
        )
        subject, text, from_name = shown["subject"], shown["text"], shown["from_name"]
        html = shown["html"] or None
        local_id = message.message_id
        if not MESSAGE_ID_PART.match(local_id):
            local_id = uuid.uuid4().hex
        provider_id = f"<{local_id}@{relay.domain}>"
        try:
            try:
                content = client.contents.content(from_name, subject, text, html)
            except NoSkeleton:
                content = build_content(
                    from_address=relay.from_address,
                    from_name=from_name,
                    subject=subject,
                    text=text,
                    html=html,
                )
            head = recipient_headers(
                to=to, message_id=provider_id, date=date, unsubscribe_url=message.unsubscribe_url
            )
        except HeaderInjection as exc:
            return email_failure(message.message_id, "header_injection", f"refused: {exc}")
        except (ValueError, TypeError) as exc:  # e.g. the email package refusing a header
            return email_failure(message.message_id, "invalid_message", f"refused: {exc}")
        return _Outgoing(
            message_id=message.message_id,
            rcpt_to=b"TO:<%s>" % to.encode("ascii"),
            data=head + content,
            provider_id=provider_id,
        )

    async def _worker(
        self, pool: SMTPPool, outgoing: Sequence[_Outgoing | SendResult], batch: Batch
    ) -> None:
        """Sends the batch's messages on one connection until none is left; a connection
        that cannot be made, or a second timeout, stops this worker alone (what no worker is
        left to send fails with its reason)."""
        results = batch.results
        timeouts = 0
        smtp = await pool.acquire()
        try:
            while (index := batch.take()) is not None:
                message = outgoing[index]
                assert isinstance(message, _Outgoing)
                if smtp is None or not smtp.is_connected:
                    try:
                        smtp = await pool.connect()
                    except SetupError as exc:
                        batch.again(index)  # the others, if any, carry on with the queue
                        batch.unsent = exc.result
                        return
                started = time.perf_counter()
                try:
                    result = await self._transaction(smtp, pool, message)
                except _Resend:
                    message.retried = True
                    batch.again(index)
                    continue
                except aiosmtplib.SMTPTimeoutError as exc:
                    # aiosmtplib closed the connection. One slow recipient is no reason to stop;
                    # a second timeout is: the relay has most likely stalled.
                    results[index] = _with_latency(
                        email_failure(message.message_id, "timeout", f"{exc}"), started
                    )
                    timeouts += 1
                    if timeouts > 1:
                        batch.unsent = SetupError(
                            "timeout", f"the relay stopped answering: {exc}"
                        ).result
                        return
                    continue
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    smtp.close()
                    result = email_failure(message.message_id, "network_error", f"lost: {exc}")
                except asyncio.CancelledError:
                    smtp.close()
                    results[index] = email_failure(
                        message.message_id, "timeout", "the batch's time ran out while sending"
                    )
                    raise
                except Exception as exc:  # a bug must not lose what the batch already sent
                    logger.exception("SMTP transaction failed unexpectedly")
                    smtp.close()
                    result = email_failure(
                        message.message_id, "smtp_error", f"{type(exc).__name__}: {exc}"
                    )
                results[index] = _with_latency(result, started)
        finally:
            pool.release(smtp)

    async def _transaction(
        self, smtp: aiosmtplib.SMTP, pool: SMTPPool, outgoing: _Outgoing
    ) -> SendResult:
        """MAIL, RCPT, DATA for one message; RSET after a refusal."""
        mail = (pool.mail_from,)
        if smtp.supports_extension("size"):
            mail += (b"SIZE=%d" % len(outgoing.data),)
        try:
            reply = await smtp.execute_command(b"MAIL", *mail)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
            if outgoing.retried:
                raise
            raise _Resend from None  # the connection was closed while idle: nothing was sent
        if reply.code != 250:
            if reply.code == 421 and not outgoing.retried:
                smtp.close()
                raise _Resend
            return await self._refused(smtp, outgoing, "MAIL", reply.code, reply.message)
        reply = await smtp.execute_command(b"RCPT", outgoing.rcpt_to)
        if reply.code not in (250, 251):
            return await self._refused(smtp, outgoing, "RCPT", reply.code, reply.message)
        try:
            reply = await smtp.data(outgoing.data)
        except aiosmtplib.SMTPDataError as exc:
            return await self._refused(smtp, outgoing, "DATA", exc.code, exc.message)
        return SendResult(
            message_id=outgoing.message_id,
            ok=True,
            provider_id=outgoing.provider_id,
            status_code=reply.code,
        )

    async def _refused(
        self, smtp: aiosmtplib.SMTP, outgoing: _Outgoing, command: str, code: int, text: str
    ) -> SendResult:
        result = classify_smtp(
            outgoing.message_id, code, enhanced_status(text), text, command=command
        )
        if code == 421 or not smtp.is_connected:
            smtp.close()  # the relay is closing it: the next message connects anew
        else:
            try:
                await smtp.rset()
            except (aiosmtplib.SMTPException, ConnectionError):
                smtp.close()
        return result


class _Resend(Exception):
    """The message met a connection closed before any of it was accepted: send it again on a
    new connection (once)."""


def _with_latency(result: SendResult, started: float) -> SendResult:
    latency_ms = (time.perf_counter() - started) * 1000
    return SendResult(
        message_id=result.message_id,
        ok=result.ok,
        provider_id=result.provider_id,
        status_code=result.status_code,
        error_code=result.error_code,
        error_message=result.error_message,
        permanent=result.permanent,
        token_invalid=result.token_invalid,
        retry_after=result.retry_after,
        latency_ms=latency_ms,
    )


def _local_fqdn() -> str:
    """This host's name for EHLO: its FQDN when it has one without blanks, else localhost."""
    name = socket.getfqdn()
    if not name or any(c.isspace() or ord(c) < 33 or ord(c) > 126 for c in name):
        return "localhost"
    return name
