"""What an e-mail looks like on the wire: checked addresses and header values, the content
common to a message's recipients (`ContentBuilder`, `build_content`) and the headers each
recipient has alone (`recipient_headers`)."""

from __future__ import annotations

import datetime
import email.policy
import email.utils
import functools
import re
import time
import uuid
from collections.abc import Mapping
from email import base64mime, quoprimime
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from typing import Any

# RFC 5321 mailbox in its plain form: a dot-atom local part and a host name or address literal.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(
    rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)*{_LABEL}|\[[A-Za-z0-9.:]+\])\Z"
)
# What splitlines() breaks on, and NUL: none of it may reach a header.
LINE_BREAK = re.compile("[\x00\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
MESSAGE_ID_PART = re.compile(r"[A-Za-z0-9._-]+\Z")
BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def content_of(
    *,
    title: str,
    body: str,
    data: Mapping[str, Any],
    part: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What an e-mail of this content says: the subject (the part's, else the title), the
    text (the body), the HTML alternative ("" for none) and the sender's name (the part's,
    else the relay's `from_name`). The adapter builds the message from it; a preview shows it."""
    subject = part.get("subject")
    from_name = part.get("from_name")
    html = part.get("html")
    return {
        "subject": subject if isinstance(subject, str) and subject else title or "",
        "text": body or "",
        "html": html if isinstance(html, str) else "",
        "from_name": from_name
        if isinstance(from_name, str) and from_name
        else (credentials or {}).get("from_name") or "",
    }


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
    if LINE_BREAK.search(value):
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
            raise NoSkeleton
        return tuple(segments)


class NoSkeleton(Exception):
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


class Dates:
    """The Date header's value, formatted once a second."""

    second = -1
    value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self.value, self.second = email.utils.format_datetime(moment), second
        return self.value
