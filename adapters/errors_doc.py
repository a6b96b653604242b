"""`adapters/ERRORS.md`, generated from every adapter's error table (its class's `errors`):
`python -m adapters.errors_doc > adapters/ERRORS.md` (a test keeps the file current)."""

from __future__ import annotations

from collections.abc import Iterable

from adapters import email
from adapters.apns import APNsAdapter
from adapters.email import EmailAdapter
from adapters.errors import LOCAL_ERRORS, ErrorClass
from adapters.fcm import FCMAdapter
from adapters.kakao import KakaoAdapter
from adapters.sms import TwilioSMSAdapter
from adapters.webpush import WebPushAdapter

_HEADER = [
    "| Provider | Code | HTTP | Permanent | Token invalid | Credential rejected | Meaning |",
    "|---|---|---|---|---|---|---|",
]
_YES_NO = {True: "yes", False: "no"}


def errors_markdown() -> str:
    """The error tables as Markdown, the content of `adapters/ERRORS.md`."""
    lines = [
        "# Provider errors",
        "",
        "Generated: `python -m adapters.errors_doc > adapters/ERRORS.md`.",
        "",
        *_HEADER,
        *_rows((*APNsAdapter.errors.values(), *FCMAdapter.errors.values())),
        *_rows(LOCAL_ERRORS.values()),
        "",
        "## Twilio (SMS), Web Push and local e-mail failures",
        "",
        *_HEADER,
        *_rows(TwilioSMSAdapter.errors.values()),
        *_rows(WebPushAdapter.errors.values()),
        *_rows(EmailAdapter.errors.values()),
        "",
        "## SMTP replies",
        "",
        "The code of a refused e-mail is `smtp_<reply code>`; the first matching row decides.",
        "",
        "| Command | Reply | Enhanced status | Permanent | Token invalid | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for outcome in email.SMTP_OUTCOMES:
        lines.append(
            f"| {outcome.command} | {outcome.code} | {outcome.enhanced or 'any'} "
            f"| {_YES_NO[outcome.permanent]} | {_YES_NO[outcome.token_invalid]} "
            f"| {outcome.meaning} |"
        )
    lines += _kakao_table()
    return "\n".join(lines) + "\n"


def _rows(errors: Iterable[ErrorClass]) -> list[str]:
    return [
        f"| {error.provider} | `{error.code}` | {error.status or ''} "
        f"| {_YES_NO[error.permanent]} | {_YES_NO[error.token_invalid]} "
        f"| {_YES_NO[error.credential_rejected]} | {error.meaning} |"
        for error in errors
    ]


def _kakao_table() -> list[str]:
    """NHN Cloud's AlimTalk codes: API answers (0 or negative) and final delivery results."""
    lines = [
        "",
        "## NHN Cloud KakaoTalk (AlimTalk)",
        "",
        "API response codes (a request's or a recipient's `resultCode`) are 0 or negative;",
        "delivery result codes (the results' `resultCode`, 1000 = delivered) are positive.",
        "",
        "| Provider | Code | Permanent | Token invalid | Credential rejected | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for error in KakaoAdapter.errors.values():
        lines.append(
            f"| {error.provider} | `{error.code}` | {_YES_NO[error.permanent]} "
            f"| {_YES_NO[error.token_invalid]} | {_YES_NO[error.credential_rejected]} "
            f"| {error.meaning} |"
        )
    return lines


if __name__ == "__main__":
    print(errors_markdown(), end="")
