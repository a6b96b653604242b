"""The connections to one relay: its checked settings (`Relay`) and `SMTPPool`, which keeps
up to `size` of them open between batches, each greeted, secured and authenticated."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from adapters.base import AdapterConfigurationError, SendResult
from adapters.email.content import LINE_BREAK, plain_address
from adapters.email.errors import classify_smtp, email_failure, enhanced_status

SECURITY_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


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
        if LINE_BREAK.search(host) or " " in host:
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
        if not isinstance(from_name, str) or LINE_BREAK.search(from_name):
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


class SetupError(Exception):
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
        except SetupError:
            raise
        except aiosmtplib.SMTPConnectResponseError as exc:  # a greeting other than 220
            raise SetupError("smtp_error", str(exc), reply=(exc.code, exc.message)) from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            raise SetupError("timeout", f"{relay.host}:{relay.port}: {exc}") from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            code = "tls_error" if _is_tls_failure(exc) else "network_error"
            raise SetupError(code, f"{relay.host}:{relay.port}: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:  # EHLO and HELO refused
            raise SetupError("smtp_error", str(exc), reply=(exc.code, exc.message)) from exc
        except Exception as exc:
            raise SetupError("smtp_error", f"{type(exc).__name__}: {exc}") from exc
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
                raise SetupError("tls_error", "the relay does not offer STARTTLS")
            try:
                await smtp.starttls()
            except aiosmtplib.SMTPResponseException as exc:
                raise SetupError(
                    "tls_error", f"STARTTLS refused: {exc.code} {exc.message}"
                ) from exc
            except ssl.SSLError as exc:
                raise SetupError("tls_error", f"STARTTLS: {exc}") from exc
            await self._hello(smtp)  # RFC 3207: ask again what the server offers under TLS
        if self.relay.username is not None:
            if not smtp.supports_extension("auth"):
                raise SetupError("smtp_auth_failed", "the relay does not offer AUTH here")
            try:
                await smtp.login(self.relay.username, self.relay.password)
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise SetupError(
                    "smtp_auth_failed", str(exc), reply=(exc.code, exc.message)
                ) from exc
            except aiosmtplib.SMTPException as exc:
                if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
                    raise
                raise SetupError("smtp_auth_failed", f"AUTH: {exc}") from exc  # no mechanism

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
