"""E-mail adapter: SMTP to each application's own relay, through aiosmtplib.

Credentials (per application): `{"host", "port", "security": "starttls"|"tls"|"none",
"username", "password", "from_address", "from_name"}`; AUTH only when a username is set.
STARTTLS is required when asked for (a relay that does not offer it fails the batch rather than
sending in clear), and certificates are verified against the system's CAs or `SMTP_CA_FILE`.

Each credential set has a small pool of connections per process (`EMAIL_CONNECTIONS_PER_RELAY`)
that outlive the batch, and each connection carries many messages, one MAIL/RCPT/DATA
transaction each, so a batch pays no TCP/TLS handshake or AUTH. A batch's messages are drawn by
one worker per connection, side by side. A refused transaction is followed by RSET; a 421 or a
lost connection makes the worker connect again (a message whose MAIL met a closed connection
is sent once more on the new one: nothing of it had been accepted); a connection that cannot
be made, or a second timeout, stops the worker, and the messages no worker is left to send
fail with that error. A batch has `send_rounds` timeouts in all: no transaction starts after
`send_rounds - 1` of them, and one still running after all of them is cancelled; what is
unsent then fails `timeout` (temporary). The loop is the one every adapter shares
(`adapters.asyncio_adapter`).

Messages are `email.message.EmailMessage`s with the SMTP policy (CRLF, 7-bit transfer
encodings, so any relay takes them without 8BITMIME). Building one whole costs about half a
millisecond of CPU, so `ContentBuilder` keeps what messages share: a campaign's whole content
(From, Subject, the text and HTML parts), and for content that differs per recipient (a
template's variables) the `EmailMessage` skeleton of its headers and MIME structure, into which
each message's bodies go encoded by the email package's own encoders. Only To, Message-ID, Date
and List-Unsubscribe are written per recipient, in front. A header value with a line break is
refused (`header_injection`) rather than sent.

SMTP replies map to results through `SMTP_OUTCOMES` (data, first matching row wins) in
`classify_smtp`; every refusal is recorded as `error_code` `smtp_<code>` (`smtp_auth_failed`
for AUTH) with the command, the enhanced status and the server's text in `error_message`;
failures without a reply have the codes of `EMAIL_LOCAL_ERRORS` or `network_error` and
`timeout`.
"""

from __future__ import annotations

import asyncio
import datetime
import email.policy
import email.utils
import functools
import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import base64mime, quoprimime
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from functools import partial
from typing import Any

import aiosmtplib

from adapters.asyncio_adapter import AsyncBatchAdapter, Batch
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult
from adapters.errors import LOCAL_ERRORS, ErrorClass, error_table, failure

logger = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


# --- Outcomes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SMTPOutcome:
    """How a reply to one SMTP command is handled.

    `command`: "MAIL", "RCPT", "DATA", "AUTH", "CONNECT" or "*"; `code`: "550", "5xx" or "*";
    `enhanced`: "" for any, "none" when the reply has no enhanced status code (RFC 3463), a
    class prefix ending in "." (e.g. "5.1.") or one exact status."""

    command: str
    code: str
    enhanced: str
    permanent: bool
    token_invalid: bool
    meaning: str

    def matches(self, command: str, code: int, enhanced: str | None) -> bool:
        if self.command not in ("*", command):
            return False
        if self.code != "*":
            text = str(code)
            if self.code.endswith("xx") and text[:1] != self.code[0]:
                return False
            if not self.code.endswith("xx") and text != self.code:
                return False
        if self.enhanced == "":
            return True
        if self.enhanced == "none":
            return enhanced is None
        if enhanced is None:
            return False
        if self.enhanced.endswith("."):
            return enhanced.startswith(self.enhanced)
        return enhanced == self.enhanced


# First match wins. The address is dead (token_invalid) only when RCPT is refused for the
# mailbox itself: enhanced status 5.1.x (bad destination address) or 5.2.1 (mailbox disabled),
# or a bare 550; a 550 with another enhanced status (5.7.1 relaying denied, policy) is about
# us or the message, so the subscription stays. Refusals of AUTH or of the session itself
# (greeting, EHLO) are temporary: the operator fixes the relay or its credentials, and the
# message is still good.
SMTP_OUTCOMES: tuple[SMTPOutcome, ...] = (
    SMTPOutcome("AUTH", "*", "", False, False, "the relay refused our AUTH: fix its credentials"),
    SMTPOutcome("CONNECT", "*", "", False, False, "the relay refused the session (greeting, EHLO)"),
    SMTPOutcome("RCPT", "5xx", "5.1.", True, True, "bad destination address (unknown user, ...)"),
    SMTPOutcome("RCPT", "5xx", "5.2.1", True, True, "the mailbox is disabled"),
    SMTPOutcome("RCPT", "550", "none", True, True, "mailbox unavailable"),
    SMTPOutcome("*", "421", "", False, False, "the relay is closing the connection"),
    SMTPOutcome("*", "4xx", "", False, False, "temporary refusal (greylisting, rate limit)"),
    SMTPOutcome("*", "5xx", "", True, False, "permanent refusal (policy, content, size, sender)"),
    SMTPOutcome("*", "*", "", False, False, "unexpected reply"),
)

# Failures found on our side or in setting up the connection.
EMAIL_LOCAL_ERRORS: dict[str, ErrorClass] = error_table(
    "SMTP",
    [
        ("header_injection", None, True, False, False, "a header value holds a line break"),
        ("invalid_message", None, True, False, False, "a header or body cannot be encoded"),
        ("invalid_address", None, True, False, False, "not a plain ASCII e-mail address"),
        ("tls_error", None, False, False, False, "TLS failed or STARTTLS is not offered"),
        ("smtp_auth_failed", None, False, False, False, "AUTH refused or not offered"),
        ("smtp_error", None, False, False, False, "the SMTP session failed unexpectedly"),
    ],
)

MAX_REPLY_TEXT = 500  # of a server's reply kept in error_message
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?:\s|$)")


def enhanced_status(text: str) -> str | None:
    """The RFC 3463 enhanced status code at the start of a reply's text, if any."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else None


def smtp_outcome(command: str, code: int, enhanced: str | None) -> SMTPOutcome:
    for outcome in SMTP_OUTCOMES:
        if outcome.matches(command, code, enhanced):
            return outcome
    raise AssertionError("SMTP_OUTCOMES ends with a catch-all row")


def classify_smtp(
    message_id: str,
    code: int,
    enhanced: str | None = None,
    text: str = "",
    *,
    command: str = "RCPT",
    latency_ms: float | None = None,
) -> SendResult:
    """The result of a refusal: the reply `code` to `command`, its enhanced status and text."""
    outcome = smtp_outcome(command, code, enhanced)
    text = text[:MAX_REPLY_TEXT]
    detail = f"{command} {code} {text}".strip() if text else f"{command} {code}"
    if enhanced and not text.startswith(enhanced):
        detail = f"{command} {code} {enhanced} {text}".strip()
    return SendResult(
        message_id=message_id,
        ok=False,
        status_code=code,
        error_code="smtp_auth_failed" if command == "AUTH" else f"smtp_{code}",
        error_message=f"{detail} ({outcome.meaning})",
        permanent=outcome.permanent,
        token_invalid=outcome.token_invalid,
        latency_ms=latency_ms,
    )


def email_failure(
    message_id: str, code: str, error_message: str = "", *, token_invalid: bool = False
) -> SendResult:
    """A failure of `EMAIL_LOCAL_ERRORS` (or `network_error`, `timeout`)."""
    error = EMAIL_LOCAL_ERRORS.get(code) or LOCAL_ERRORS[code]
    return failure(message_id, error, error_message, token_invalid=token_invalid)


# --- Messages ------------------------------------------------------------------------------

# RFC 5321 mailbox in its plain form: a dot-atom local part and a host name or address literal.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(
    rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)*{_LABEL}|\[[A-Za-z0-9.:]+\])\Z"
)
# What splitlines() breaks on, and NUL: none of it may reach a header.
_LINE_BREAK = re.compile("[\x00\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_MESSAGE_ID_PART = re.compile(r"[A-Za-z0-9._-]+\Z")
_BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def plain_address(value: Any) -> str | None:
    """`value` when it is a plain ASCII e-mail address within RFC 5321's lengths, else None."""
    if not isinstance(value, str) or len(value) > 254:
        return None
    match = _ADDRESS.match(value)
    if match is None or len(match.group(1)) > 64:
        return None
    return value


class _CachedHeaderRegistry(HeaderRegistry):
    """The standard header factory without its new class per header (`__getitem__` builds
    one on every call, a third of a message's cost)."""

    __getitem__ = functools.lru_cache(maxsize=256)(HeaderRegistry.__getitem__)


# The SMTP policy (CRLF), with 7-bit transfer encodings (quoted-printable or base64 for
# non-ASCII or long lines), so that no relay needs 8BITMIME.
POLICY = email.policy.SMTP.clone(cte_type="7bit", header_factory=_CachedHeaderRegistry())


class InvalidHeader(ValueError):
    """A header value that cannot be sent as it is."""


class HeaderInjection(InvalidHeader):
    """A header value holds a line break."""


MAX_URL = 900  # a longer List-Unsubscribe would not fit a line of 998 octets


def _header_value(name: str, value: str) -> str:
    if _LINE_BREAK.search(value):
        raise HeaderInjection(f"{name} holds a line break")
    return value


def build_content(
    *, from_address: str, from_name: str, subject: str, text: str, html: str | None
) -> bytes:
    """The part of a message common to all its recipients, built whole by `EmailMessage`:
    From, Subject, MIME-Version and the body (text/plain, or multipart/alternative with
    text/html), serialized. `ContentBuilder` makes the same, faster."""
    message = EmailMessage(policy=POLICY)
    _set_sender_and_subject(message, from_address, from_name, subject)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def _set_sender_and_subject(
    message: EmailMessage, from_address: str, from_name: str, subject: str
) -> None:
    name = _header_value("From name", from_name)
    message["From"] = Address(display_name=name, addr_spec=from_address) if name else from_address
    message["Subject"] = _header_value("Subject", subject)


def encode_body(text: str) -> tuple[str, bytes]:
    """A text part's Content-Transfer-Encoding and its body, with CRLF line ends: 7bit for
    ASCII lines of up to 78 characters (as the email package chooses), else quoted-printable
    when under a sixth of the UTF-8 bytes are non-ASCII, else base64 (the shorter one), each
    by the email package's own encoder."""
    data = text.encode("utf-8")
    lines = data.splitlines()
    if data.isascii() and all(len(line) <= POLICY.max_line_length for line in lines):
        return "7bit", b"\r\n".join(lines) + b"\r\n"
    normal = b"\n".join(lines) + b"\n"
    non_ascii = len(normal) - len(normal.decode("ascii", "ignore"))
    if non_ascii * 6 < len(normal):
        cte = "quoted-printable"
        encoded = quoprimime.body_encode(normal.decode("latin-1"), 76, "\r\n")
    else:
        # Text in canonical form (CRLF line ends) inside base64, as RFC 2045 6.8 wants.
        cte = "base64"
        encoded = base64mime.body_encode(b"\r\n".join(lines) + b"\r\n", 76, "\r\n")
    if not encoded.endswith("\r\n"):
        encoded += "\r\n"
    return cte, encoded.encode("ascii")


class ContentBuilder:
    """Builds and keeps what a relay's messages have in common.

    A campaign's messages share their content: it is kept whole (`cache_size` distinct ones).
    Messages that differ only in their text (a template's variables) share a skeleton: the
    `EmailMessage` with From, Subject, the MIME structure and each part's headers, built once
    per (from name, subject, transfer encodings) with a marker for each body; a message is
    the skeleton with its bodies, encoded by `encode_body`, in the markers' place."""

    def __init__(self, from_address: str, cache_size: int = 256) -> None:
        self.from_address = from_address
        self.cache_size = cache_size
        self._marker = uuid.uuid4().hex.upper()  # ASCII letters and digits: no encoder alters it
        # Per builder: a relay's From address is in every skeleton.
        self.content = functools.lru_cache(maxsize=cache_size)(self._content)
        self._skeleton = functools.lru_cache(maxsize=cache_size)(self._new_skeleton)

    def _content(self, from_name: str, subject: str, text: str, html: str | None) -> bytes:
        text_cte, text_body = encode_body(text)
        if html is None:
            bodies = (text_body,)
            segments = self._skeleton(from_name, subject, text_cte, None)
        else:
            html_cte, html_body = encode_body(html)
            bodies = (text_body, html_body)
            segments = self._skeleton(from_name, subject, text_cte, html_cte)
        parts = [segments[0]]
        for body, segment in zip(bodies, segments[1:], strict=True):
            parts += (body, segment)
        return b"".join(parts)

    def _new_skeleton(
        self, from_name: str, subject: str, text_cte: str, html_cte: str | None
    ) -> tuple[bytes, ...]:
        message = EmailMessage(policy=POLICY)
        _set_sender_and_subject(message, self.from_address, from_name, subject)
        marker = self._marker
        message.set_content(marker + "\n", cte="7bit")
        ctes = [text_cte]
        if html_cte is not None:
            message.add_alternative(marker + "\n", subtype="html", cte="7bit")
            ctes.append(html_cte)
        parts = list(message.iter_parts()) if html_cte is not None else [message]
        for part, cte in zip(parts, ctes, strict=True):
            part.replace_header("Content-Transfer-Encoding", cte)
        segments = message.as_bytes().split(marker.encode("ascii") + b"\r\n")
        if len(segments) != len(ctes) + 1:  # the marker in a header: build it whole
            raise _NoSkeleton
        return tuple(segments)


class _NoSkeleton(Exception):
    """A skeleton's marker appeared outside the bodies."""


def fold_plain(name: str, value: str) -> bytes:
    """A header whose value is ASCII without blanks: on one line when it fits in 78
    characters (as `POLICY` writes it), else the value alone on a continuation line, the one
    place RFC 5322 lets such a value break. The policy's own folding of a long unstructured
    value would turn a List-Unsubscribe URL into RFC 2047 encoded words, which its readers do
    not decode; and this costs no header object per recipient."""
    if len(name) + 2 + len(value) <= POLICY.max_line_length:
        return f"{name}: {value}\r\n".encode("ascii")
    return f"{name}:\r\n {value}\r\n".encode("ascii")


_PLAIN_URL = re.compile(r"https?://[\x21-\x7e]+\Z")


def recipient_headers(*, to: str, message_id: str, date: str, unsubscribe_url: str | None) -> bytes:
    """The headers that differ per recipient. `to` is a checked plain address, `message_id`
    a full `<id@domain>`, `date` an RFC 5322 date."""
    head = fold_plain("To", to) + fold_plain("Message-ID", message_id)
    head += POLICY.fold_binary("Date", date)
    if unsubscribe_url is not None:
        url = _header_value("List-Unsubscribe", unsubscribe_url)
        if len(url) > MAX_URL or not _PLAIN_URL.match(url) or "<" in url or ">" in url:
            raise InvalidHeader("the unsubscribe URL is not a plain http(s) URL")
        # RFC 8058 one-click: the receiver POSTs List-Unsubscribe=One-Click to the URL.
        head += fold_plain("List-Unsubscribe", f"<{url}>")
        head += fold_plain("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    return head


class _Dates:
    """The Date header's value, formatted once a second."""

    second = -1
    value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self.value, self.second = email.utils.format_datetime(moment), second
        return self.value


# --- Connections ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relay:
    """One credential set's relay, checked."""

    host: str
    port: int
    security: str
    username: str | None
    password: str
    from_address: str
    from_name: str
    domain: str

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Relay:
        if not isinstance(values, Mapping) or not values.get("host"):
            raise AdapterConfigurationError("E-mail credentials need a host")
        host = str(values["host"]).strip()
        if _LINE_BREAK.search(host) or " " in host:
            raise AdapterConfigurationError("E-mail credentials: host is not a host name")
        security = str(values.get("security") or "starttls").lower()
        if security not in SECURITY_MODES:
            raise AdapterConfigurationError(
                f"E-mail credentials: security must be one of {', '.join(SECURITY_MODES)}"
            )
        try:
            port = int(values.get("port") or DEFAULT_PORTS[security])
        except (TypeError, ValueError) as exc:
            raise AdapterConfigurationError("E-mail credentials: port is not a number") from exc
        if not 0 < port < 65536:
            raise AdapterConfigurationError("E-mail credentials: port out of range")
        from_address = plain_address(values.get("from_address"))
        if from_address is None:
            raise AdapterConfigurationError(
                "E-mail credentials need a from_address, a plain ASCII e-mail address"
            )
        from_name = values.get("from_name") or ""
        if not isinstance(from_name, str) or _LINE_BREAK.search(from_name):
            raise AdapterConfigurationError("E-mail credentials: from_name holds a line break")
        username = values.get("username") or None
        password = values.get("password") or ""
        if username is not None and not isinstance(username, str):
            raise AdapterConfigurationError("E-mail credentials: username must be a string")
        if not isinstance(password, str):
            raise AdapterConfigurationError("E-mail credentials: password must be a string")
        return cls(
            host=host,
            port=port,
            security=security,
            username=username,
            password=password,
            from_address=from_address,
            from_name=from_name,
            domain=from_address.rpartition("@")[2],
        )


class _SetupError(Exception):
    """A connection could not be made ready: its failure stands for the messages it was to
    carry."""

    def __init__(self, code: str, detail: str, *, reply: tuple[int, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.reply = reply  # (code, text) of an SMTP refusal

    def result(self, message_id: str) -> SendResult:
        if self.reply is not None:
            code, text = self.reply
            command = "AUTH" if self.code == "smtp_auth_failed" else "CONNECT"
            return classify_smtp(message_id, code, enhanced_status(text), text, command=command)
        return email_failure(message_id, self.code, self.detail)


def _is_tls_failure(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError)


class SMTPPool:
    """Up to `size` connections to one relay, kept open between batches."""

    def __init__(
        self,
        relay: Relay,
        *,
        size: int,
        timeout: float,
        tls_context: ssl.SSLContext | None,
        helo_name: str,
    ) -> None:
        self.relay = relay
        self.size = size
        self.timeout = timeout
        self.tls_context = tls_context
        self.helo_name = helo_name
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False
        self.mail_from = f"FROM:<{relay.from_address}>".encode("ascii")
        self.connections_made = 0

    async def acquire(self) -> aiosmtplib.SMTP | None:
        """A slot, with an open connection when one is idle (else None: connect it)."""
        await self._slots.acquire()
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp
        return None

    def release(self, smtp: aiosmtplib.SMTP | None) -> None:
        if smtp is not None:
            if smtp.is_connected and not self._closed:
                self._idle.append(smtp)
            else:
                smtp.close()
        self._slots.release()

    async def connect(self) -> aiosmtplib.SMTP:
        """A new connection, greeted, secured and authenticated as the relay wants."""
        relay = self.relay
        smtp = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            local_hostname=self.helo_name,
            timeout=self.timeout,
            use_tls=relay.security == "tls",
            start_tls=False,  # done below: required, not opportunistic
            tls_context=self.tls_context,
        )
        ready = False
        try:
            await self._set_up(smtp)
            ready = True
        except _SetupError:
            raise
        except aiosmtplib.SMTPConnectResponseError as exc:  # a greeting other than 220
            raise _SetupError("smtp_error", str(exc), reply=(exc.code, exc.message)) from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            raise _SetupError("timeout", f"{relay.host}:{relay.port}: {exc}") from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            code = "tls_error" if _is_tls_failure(exc) else "network_error"
            raise _SetupError(code, f"{relay.host}:{relay.port}: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:  # EHLO and HELO refused
            raise _SetupError("smtp_error", str(exc), reply=(exc.code, exc.message)) from exc
        except Exception as exc:
            raise _SetupError("smtp_error", f"{type(exc).__name__}: {exc}") from exc
        finally:
            if not ready:  # also when cancelled
                smtp.close()
        self.connections_made += 1
        return smtp

    async def _set_up(self, smtp: aiosmtplib.SMTP) -> None:
        await smtp.connect()
        await self._hello(smtp)
        if self.relay.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise _SetupError("tls_error", "the relay does not offer STARTTLS")
            try:
                await smtp.starttls()
            except aiosmtplib.SMTPResponseException as exc:
                raise _SetupError(
                    "tls_error", f"STARTTLS refused: {exc.code} {exc.message}"
                ) from exc
            except ssl.SSLError as exc:
                raise _SetupError("tls_error", f"STARTTLS: {exc}") from exc
            await self._hello(smtp)  # RFC 3207: ask again what the server offers under TLS
        if self.relay.username is not None:
            if not smtp.supports_extension("auth"):
                raise _SetupError("smtp_auth_failed", "the relay does not offer AUTH here")
            try:
                await smtp.login(self.relay.username, self.relay.password)
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise _SetupError(
                    "smtp_auth_failed", str(exc), reply=(exc.code, exc.message)
                ) from exc
            except aiosmtplib.SMTPException as exc:
                if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
                    raise
                raise _SetupError("smtp_auth_failed", f"AUTH: {exc}") from exc  # no mechanism

    @staticmethod
    async def _hello(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            await smtp.helo()  # a server without ESMTP

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for smtp in idle:
            smtp.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                async with asyncio.timeout(min(self.timeout, 5)):
                    await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
            finally:
                smtp.close()


# --- The adapter ---------------------------------------------------------------------------


@dataclass
class _Client:
    pool: SMTPPool
    relay: Relay
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
        self._dates = _Dates()
        super().__init__()

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
            hopeless = "@" not in token or bool(_BLANK_OR_CONTROL.search(token))
            return email_failure(
                message.message_id,
                "invalid_address",
                "the address is not a plain ASCII e-mail address",
                token_invalid=hopeless,
            )
        relay = client.relay
        parts = message.parts or {}
        subject = _text(parts.get("subject")) or message.title or ""
        from_name = _text(parts.get("from_name")) or relay.from_name
        html = parts.get("html") if isinstance(parts.get("html"), str) else None
        local_id = message.message_id
        if not _MESSAGE_ID_PART.match(local_id):
            local_id = uuid.uuid4().hex
        provider_id = f"<{local_id}@{relay.domain}>"
        try:
            try:
                content = client.contents.content(from_name, subject, message.body or "", html)
            except _NoSkeleton:
                content = build_content(
                    from_address=relay.from_address,
                    from_name=from_name,
                    subject=subject,
                    text=message.body or "",
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
                    except _SetupError as exc:
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
                        batch.unsent = _SetupError(
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _local_fqdn() -> str:
    """This host's name for EHLO: its FQDN when it has one without blanks, else localhost."""
    name = socket.getfqdn()
    if not name or any(c.isspace() or ord(c) < 33 or ord(c) > 126 for c in name):
        return "localhost"
    return name
