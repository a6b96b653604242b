"""What the SMTP replies and the failures found on our side mean (`SMTP_OUTCOMES`,
`EMAIL_LOCAL_ERRORS`), and the results they make."""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapters.base import SendResult
from adapters.errors import LOCAL_ERRORS, ErrorClass, error_table, failure


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
