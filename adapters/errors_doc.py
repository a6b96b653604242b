"""`adapters/ERRORS.md`, generated from every adapter's error table:
`python -m adapters.errors_doc > adapters/ERRORS.md` (a test keeps the file current)."""

from __future__ import annotations

from adapters import email, sms, webpush
from adapters.errors import ALL_ERRORS
from adapters.kakao import errors as kakao_errors


def errors_markdown() -> str:
    """The error table as Markdown, the content of `adapters/ERRORS.md`."""
    lines = [
        "# Provider errors",
        "",
        "Generated: `python -m adapters.errors_doc > adapters/ERRORS.md`.",
        "",
        "| Provider | Code | HTTP | Permanent | Token invalid | Credential rejected | Meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    yes_no = {True: "yes", False: "no"}
    for error in ALL_ERRORS:
        lines.append(
            f"| {error.provider} | `{error.code}` | {error.status or ''} "
            f"| {yes_no[error.permanent]} | {yes_no[error.token_invalid]} "
            f"| {yes_no[error.credential_rejected]} | {error.meaning} |"
        )
    lines += _channel_tables()
    lines += _kakao_table()
    return "\n".join(lines) + "\n"


def _channel_tables() -> list[str]:
    """The e-mail, SMS and Web Push outcomes, kept with their adapters."""

    yes_no = {True: "yes", False: "no"}
    lines = [
        "",
        "## Twilio (SMS), Web Push and local e-mail failures",
        "",
        "| Provider | Code | HTTP | Permanent | Token invalid | Credential rejected | Meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for table in (sms.TWILIO_ERRORS, webpush.WEB_PUSH_ERRORS, email.EMAIL_LOCAL_ERRORS):
        for error in table.values():
            lines.append(
                f"| {error.provider} | `{error.code}` | {error.status or ''} "
                f"| {yes_no[error.permanent]} | {yes_no[error.token_invalid]} "
                f"| {yes_no[error.credential_rejected]} | {error.meaning} |"
            )
    lines += [
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
            f"| {yes_no[outcome.permanent]} | {yes_no[outcome.token_invalid]} "
            f"| {outcome.meaning} |"
        )
    return lines


def _kakao_table() -> list[str]:
    """NHN Cloud's AlimTalk codes: API answers (0 or negative) and final delivery results."""
    yes_no = {True: "yes", False: "no"}
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
    for error in kakao_errors.KAKAO_ERRORS.values():
        lines.append(
            f"| {error.provider} | `{error.code}` | {yes_no[error.permanent]} "
            f"| {yes_no[error.token_invalid]} | {yes_no[error.credential_rejected]} "
            f"| {error.meaning} |"
        )
    return lines


if __name__ == "__main__":
    print(errors_markdown(), end="")
