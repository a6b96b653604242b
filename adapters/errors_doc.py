"""`adapters/ERRORS.md`, generated from every adapter's error table:
`python -m adapters.errors_doc > adapters/ERRORS.md` (a test keeps the file current)."""

from __future__ import annotations

from adapters import email, sms, webpush
from adapters.errors import ALL_ERRORS


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


if __name__ == "__main__":
    print(errors_markdown(), end="")
