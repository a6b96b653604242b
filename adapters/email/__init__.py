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

from adapters.email.adapter import EmailAdapter
from adapters.email.content import (
    POLICY,
    ContentBuilder,
    HeaderInjection,
    InvalidHeader,
    build_content,
    content_of,
    encode_body,
    fold_plain,
    plain_address,
    recipient_headers,
)
from adapters.email.errors import (
    EMAIL_LOCAL_ERRORS,
    SMTP_OUTCOMES,
    SMTPOutcome,
    classify_smtp,
    email_failure,
    enhanced_status,
    smtp_outcome,
)
from adapters.email.pool import DEFAULT_PORTS, SECURITY_MODES, Relay, SMTPPool

__all__ = [
    "DEFAULT_PORTS",
    "EMAIL_LOCAL_ERRORS",
    "POLICY",
    "SECURITY_MODES",
    "SMTP_OUTCOMES",
    "ContentBuilder",
    "EmailAdapter",
    "HeaderInjection",
    "InvalidHeader",
    "Relay",
    "SMTPOutcome",
    "SMTPPool",
    "build_content",
    "classify_smtp",
    "content_of",
    "email_failure",
    "encode_body",
    "enhanced_status",
    "fold_plain",
    "plain_address",
    "recipient_headers",
    "smtp_outcome",
]
