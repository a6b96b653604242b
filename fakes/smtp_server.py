"""A fake SMTP relay on loopback: aiosmtpd's SMTP protocol served on the fakes' shared loop.

Two SMTP ports and an admin port:
- the submission port: cleartext, offers STARTTLS (the state's 127.0.0.1 certificate, signed by
  the fakes' CA) and, only once under TLS, AUTH PLAIN and LOGIN; mail without AUTH is taken
  too, as from a relay trusting its network;
- the implicit-TLS port (SMTPS): TLS from the first byte, AUTH offered at once;
- the admin port (HTTP/1.1): `GET /__stats`, `POST /__reset`, `GET /__messages?to=ADDRESS`,
  `POST /__close_connections` (closes every open SMTP connection, as a relay's idle timeout or
  restart would) and `POST /__fail_next_mail?how=close|421&count=N` (the next N MAIL commands
  find the connection closed without a reply, or get `421 4.3.2` and then the close).

AUTH takes the username and password of the state's `smtp.json`; anything else gets
`535 5.7.8`. Replies carry enhanced status codes (ENHANCEDSTATUSCODES is offered).

The recipient's local part (before the last @, case-insensitive) decides the answer
(`RECIPIENT_PREFIXES`):

| Local part starts with | Answer |
|---|---|
| `bounce` | RCPT `550 5.1.1` user unknown |
| `defer` | RCPT `451 4.3.0`, always |
| `flaky<N>` (`flaky3-x`) | RCPT `451 4.3.0` for the first N attempts per address (2), then 250 |
| `reject` | accepted at RCPT; `554 5.7.1` after DATA |
| `busy` | RCPT `421 4.3.2`, then the connection is closed |
| `drop` | the connection is closed at RCPT, without a reply |
| `slow` | RCPT accepted after 2 seconds |

Any other address is accepted: `250 2.0.0` after DATA, and the message is kept.

It keeps the last 10,000 accepted messages as received (envelope and raw bytes) and parses
them only when listed: `GET /__messages?to=ADDRESS[&limit=N]` answers `{"messages": [...]}`,
oldest first, each with `envelope_from`, `envelope_to`, `from`, `to`, `subject`,
`message_id`, `date`, `list_unsubscribe`, `list_unsubscribe_post`, `headers` (`[name, value]`
in order, repeats kept; values unfolded and stripped), `text`, `html`, `tls`, `auth` (the AUTH
username or null), `size`.
`GET /__stats` has the counters of `fakes.stats.Stats` (`requests` = transactions answered
at RCPT or DATA, `by_status`, `by_reason`, `by_prefix`) and `connections`, `tls_upgrades`,
`tls_connections`, `auth_succeeded`, `auth_failed`, `rset`, `mail_close`, `mail_421`, `kept`.

Receiving stays cheap: addresses of the plain `<local@domain>` form skip aiosmtpd's full RFC
5322 parser, and a message is stored as received, not parsed.
"""

from __future__ import annotations

import asyncio
import email.policy
import hmac
import itertools
import json
import re
import secrets
import ssl
import time
import warnings
import weakref
from collections import deque
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from fakes.http1 import HTTP1Protocol, Response
from fakes.state import SERVER_CERT_FILE, FakeState, load_smtp_account
from fakes.stats import Stats

RECIPIENT_PREFIXES: dict[str, str] = {
    "bounce": "RCPT 550 5.1.1 user unknown",
    "defer": "RCPT 451 4.3.0, always",
    "flaky": "flaky<N>: RCPT 451 4.3.0 for the first N attempts per address (2), then accepted",
    "reject": "accepted at RCPT; 554 5.7.1 after DATA",
    "busy": "RCPT 421 4.3.2, then the connection is closed",
    "drop": "the connection is closed at RCPT without a reply",
    "slow": "RCPT accepted after 2 seconds",
}
FLAKY_FAILURES = 2
SLOW_SECONDS = 2.0
MAX_KEPT = 10_000
DATA_SIZE_LIMIT = 10 * 1024 * 1024
MAX_DATA_LINE = 999  # octets without CRLF: 998 of text and the doubled dot (RFC 5321 4.5.3.1.6)
HOSTNAME = "fake-smtp.signal.test"

_FLAKY = re.compile(r"flaky(\d*)")
# The plain `<local@domain>` form of a MAIL or RCPT path, and what follows it (parameters).
_PLAIN_PATH = re.compile(
    r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+|[A-Za-z0-9.-]*\[[A-Za-z0-9.:]+\])>(.*)\Z"
)
_PARSER = BytesParser(policy=email.policy.default)
# aiosmtpd itself still sets the deprecated attribute on every successful AUTH.
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")


class FakeSMTP:
    """The relay's state (accounts, kept messages, counters) and aiosmtpd's handler hooks."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.username, self.password = load_smtp_account(state)
        self._account = (self.username.encode(), self.password.encode())
        self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls_context.load_cert_chain(state.path(SERVER_CERT_FILE))
        self.stats = Stats(tuple(RECIPIENT_PREFIXES))
        # (received at, MAIL FROM, RCPT TOs, raw message, AUTH username, over TLS)
        self.kept: deque[tuple[float, str, tuple[str, ...], bytes, str | None, bool]] = deque(
            maxlen=MAX_KEPT
        )
        self._flaky_attempts: dict[str, int] = {}
        self.mail_failures: deque[str] = deque()  # "close" or "421", for the next MAILs
        self.sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()  # open connections
        self._queue_ids = itertools.count(secrets.randbits(40) << 20)

    def reset(self) -> None:
        self.stats.reset()
        self.kept.clear()
        self._flaky_attempts.clear()
        self.mail_failures.clear()

    def submission_protocol(self) -> SMTP:
        return _Session(self, implicit_tls=False)

    def smtps_protocol(self) -> SMTP:
        return _Session(self, implicit_tls=True)

    def admin_protocol(self) -> HTTP1Protocol:
        return HTTP1Protocol(self.admin, with_query=True)

    # aiosmtpd's hooks ---------------------------------------------------------------------

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", responses[-1]]

    def handle_STARTTLS(self, server, session, envelope) -> bool:
        self.stats.extra["tls_upgrades"] += 1
        return True

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rpartition("@")[0].lower()
        prefix = self.stats.prefix_of(local)
        if prefix == "other" or prefix == "reject":
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        if prefix == "bounce":
            return self._refuse(550, prefix, f"550 5.1.1 <{address}>: user unknown")
        if prefix == "defer":
            return self._refuse(451, prefix, "451 4.3.0 Temporary failure, try again later")
        if prefix == "flaky":
            attempts = self._flaky_attempts.get(address, 0) + 1
            self._flaky_attempts[address] = attempts
            digits = _FLAKY.match(local).group(1)
            if attempts <= (int(digits) if digits else FLAKY_FAILURES):
                return self._refuse(451, prefix, "451 4.3.0 Temporary failure, try again later")
        elif prefix == "busy":
            server.loop.call_soon(server.transport.close)  # after the reply is written
            return self._refuse(421, prefix, f"421 4.3.2 {HOSTNAME} closing: too busy")
        elif prefix == "drop":
            self.stats.record(0, "dropped", prefix)
            server.transport.close()
            return "421 4.3.2 not sent: the connection is closed"
        elif prefix == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_failures:
            how = self.mail_failures.popleft()
            self.stats.extra[f"mail_{how}"] += 1
            if how == "close":  # as when the relay's idle timeout fires as MAIL arrives
                server.transport.close()
                return "421 4.4.2 not sent: the connection is closed"
            server.loop.call_soon(server.transport.close)
            return f"421 4.3.2 {HOSTNAME} closing: shutting down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RSET(self, server, session, envelope):
        self.stats.extra["rset"] += 1
        return "250 2.0.0 OK"

    async def handle_DATA(self, server, session, envelope):
        first = envelope.rcpt_tos[0]
        prefix = self.stats.prefix_of(first.rpartition("@")[0].lower())
        if any(r[:6].lower() == "reject" for r in envelope.rcpt_tos):
            return self._refuse(554, "reject", "554 5.7.1 Message rejected: content policy")
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.kept.append(
            (
                time.time(),
                envelope.mail_from,
                tuple(envelope.rcpt_tos),
                envelope.original_content,
                login.decode("utf-8", "replace") if login else None,
                server.over_tls,
            )
        )
        self.stats.record(250, None, prefix)
        return f"250 2.0.0 OK: queued as {next(self._queue_ids):x}"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and all(
            hmac.compare_digest(given, expected)
            for given, expected in zip(auth_data, self._account, strict=True)
        )
        self.stats.extra["auth_succeeded" if ok else "auth_failed"] += 1
        # handled=False: aiosmtpd then answers a failure with 535 5.7.8 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def _refuse(self, code: int, prefix: str, reply: str) -> str:
        self.stats.record(code, reply[4:9], prefix)
        return reply

    # Admin --------------------------------------------------------------------------------

    def admin(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        url = urlsplit(target)
        if method == "GET" and url.path == "/__stats":
            snapshot = self.stats.snapshot()
            snapshot["kept"] = len(self.kept)
            return 200, (), json.dumps(snapshot).encode()
        if method == "POST" and url.path == "/__reset":
            self.reset()
            return 200, (), b"{}"
        if method == "POST" and url.path == "/__fail_next_mail":
            query = parse_qs(url.query)
            how = (query.get("how") or ["close"])[0]
            if how not in ("close", "421"):
                return 400, (), b'{"error": "how is close or 421"}'
            self.mail_failures.extend([how] * int((query.get("count") or ["1"])[0]))
            return 200, (), json.dumps({"pending": len(self.mail_failures)}).encode()
        if method == "POST" and url.path == "/__close_connections":
            # As a relay does to idle clients (its timeout) or when it restarts.
            sessions = [s for s in self.sessions if s.transport is not None]
            for session in sessions:
                session.transport.close()
            return 200, (), json.dumps({"closed": len(sessions)}).encode()
        if method == "GET" and url.path == "/__messages":
            query = parse_qs(url.query)
            to = (query.get("to") or [""])[0].lower()
            try:
                limit = int((query.get("limit") or ["1000"])[0])
            except ValueError:
                return 400, (), b'{"error": "limit must be a number"}'
            found = [
                record
                for record in self.kept
                if not to or any(rcpt.lower() == to for rcpt in record[2])
            ]
            messages = [_parsed(*record) for record in found[-limit:]] if limit > 0 else []
            return 200, (), json.dumps({"messages": messages}).encode()
        return 404, (), json.dumps({"error": f"no route for {method} {url.path}"}).encode()


def _parsed(
    received_at: float,
    mail_from: str,
    rcpt_tos: tuple[str, ...],
    raw: bytes,
    login: str | None,
    tls: bool,
) -> dict[str, Any]:
    message = _PARSER.parsebytes(raw)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))

    def header(name: str) -> str | None:
        value = message.get(name)
        # Unfolded; the blanks around a field's value are not part of it (RFC 5322 2.2.3).
        return None if value is None else str(value).strip()

    return {
        "received_at": received_at,
        "envelope_from": mail_from,
        "envelope_to": list(rcpt_tos),
        "from": header("From") or "",
        "to": header("To") or "",
        "subject": header("Subject") or "",
        "message_id": header("Message-ID") or "",
        "date": header("Date") or "",
        "list_unsubscribe": header("List-Unsubscribe"),
        "list_unsubscribe_post": header("List-Unsubscribe-Post"),
        "headers": [[name, str(value).strip()] for name, value in message.items()],
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
        "tls": tls,
        "auth": login,
        "size": len(raw),
    }


class _Session(SMTP):
    """aiosmtpd's protocol for one connection, with the relay's settings and counters.

    The stream reader's limit is the message size limit rather than one line, so that DATA
    is read in one piece; command lines are still held to their limits by aiosmtpd, and data
    lines to RFC 5321's 1,000 octets here."""

    line_length_limit = DATA_SIZE_LIMIT

    def __init__(self, app: FakeSMTP, *, implicit_tls: bool) -> None:
        super().__init__(
            app,
            hostname=HOSTNAME,
            ident="Automata-Signal fake SMTP",
            # STARTTLS on the submission port; under implicit TLS the transport is TLS already.
            tls_context=None if implicit_tls else app.tls_context,
            auth_require_tls=not implicit_tls,
            authenticator=app.authenticate,
            data_size_limit=DATA_SIZE_LIMIT,
            loop=asyncio.get_running_loop(),
        )
        self._app = app
        self._implicit_tls = implicit_tls
        app.stats.extra["connections"] += 1
        app.sessions.add(self)
        if implicit_tls:
            app.stats.extra["tls_connections"] += 1

    @property
    def over_tls(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    async def smtp_DATA(self, arg: str | None) -> None:
        # aiosmtpd's own reads and checks one line at a time (a coroutine step per line);
        # this reads up to the final dot at once. Checks and replies are aiosmtpd's.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await self._reader.readuntil(b"\r\n")
            if data != b".\r\n":  # else an empty message
                data += await self._reader.readuntil(b"\r\n.\r\n")
        except asyncio.LimitOverrunError:
            await self.push("552 Error: Too much mail data")
            self.transport.close()
            return
        except asyncio.IncompleteReadError:
            self.transport.close()
            return
        content = data[:-3]  # without the ".\r\n" line
        if len(content) > MAX_DATA_LINE and max(map(len, content.split(b"\r\n"))) > MAX_DATA_LINE:
            self._set_post_data_state()
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            return
        # RFC 5321 4.5.2: a line's leading dot was doubled by the client.
        content = content.replace(b"\r\n..", b"\r\n.")
        if content.startswith(b".."):
            content = content[1:]
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    def _getaddr(self, arg: str):
        # aiosmtpd parses every path with the email package's full RFC 5322 parser (and
        # defines a class on each call); the plain form needs one regular expression.
        match = _PLAIN_PATH.match(arg)
        if match is not None:
            return match.group(1), match.group(2)
        return super()._getaddr(arg)


async def serve_smtp(
    app: FakeSMTP, host: str, port: int, smtps_port: int, admin_port: int
) -> tuple[asyncio.Server, asyncio.Server, asyncio.Server]:
    """Listen on the submission, implicit-TLS and admin ports (0 picks a free one)."""
    loop = asyncio.get_running_loop()
    submission = await loop.create_server(app.submission_protocol, host, port)
    smtps = await loop.create_server(app.smtps_protocol, host, smtps_port, ssl=app.tls_context)
    admin = await loop.create_server(app.admin_protocol, host, admin_port)
    return submission, smtps, admin
