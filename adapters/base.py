"""The contract between the delivery pipeline and the channel adapters.

Adapters import no models: the pipeline hands them plain `OutboundMessage`s and the
application's decrypted credentials, and gets back exactly one `SendResult` per message,
in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True, slots=True)
class Credentials:
    """One application's credentials for one provider.

    `key` identifies the credential set (application id plus a digest of its content), so an
    adapter can keep one long-lived client per credential per process and drop it when the
    credentials change.
    """

    key: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    message_id: str
    token: str
    title: str = ""
    body: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    priority: str = "normal"  # "normal" or "high"
    ttl: int | None = None  # seconds
    collapse_id: str | None = None
    # The message's own channel part of the content, rendered (core.channels.PART_FIELDS):
    # e.g. {"subject", "html", "from_name"} for Email, {"text"} for SMS, {"url", "icon"} for
    # WebPush. Empty when the message has none: title/body/data serve every channel.
    parts: Mapping[str, Any] = field(default_factory=dict)
    # WebPush only: the subscription's {"p256dh", "auth"} (base64url, as the browser gave them).
    keys: Mapping[str, str] = field(default_factory=dict)
    # Email only: the signed one-click unsubscribe URL (RFC 8058) of a bulk e-mail (of a
    # category recipients may turn off, or of a campaign), sent as List-Unsubscribe with
    # List-Unsubscribe-Post; None for other messages, which carry neither.
    unsubscribe_url: str | None = None
    # SMS only: where the provider reports the message's delivery (Twilio `StatusCallback`);
    # None when the service has no PUBLIC_URL to be reached at.
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    ok: bool
    provider_id: str | None = None
    status_code: int | None = None
    error_code: str | None = None  # the provider's reason, e.g. "Unregistered", "UNAVAILABLE"
    error_message: str = ""
    permanent: bool = False  # retrying cannot help
    token_invalid: bool = False  # the device token is dead: disable the subscription
    retry_after: float | None = None  # seconds the provider asked us to wait
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ErrorClass:
    """How one provider error code is handled (a row of an adapter's `errors` table, built by
    `adapters.errors.error_table`)."""

    provider: str  # "APNs", "FCM", "Twilio", "WebPush", "SMTP" or "local"
    code: str
    status: int | None
    permanent: bool
    token_invalid: bool
    credential_rejected: bool
    meaning: str


class ChannelAdapter(Protocol):
    """Sends a batch of messages of one channel for one application, and says, as class
    members, what the channel is: its subscription type, its provider's error table, which
    credential values are secret, how its credentials are checked, and what a message looks
    like on it (the same function for the send and for a preview) and the JSON Schema of
    that."""

    channel: ClassVar[str]  # the subscription type, e.g. "WebPush"
    errors: ClassVar[Mapping[str, ErrorClass]]  # its provider's error table
    secret_fields: ClassVar[tuple[str, ...]]  # dotted names of values never shown
    # The JSON Schema of what content_of returns, with a "description" for people.
    content_schema: ClassVar[Mapping[str, Any]]

    @classmethod
    def clean_credentials(
        cls, values: Mapping[str, Any], *, default_subject: str = ""
    ) -> dict[str, Any]:
        """The stored form of this channel's credentials; raises CredentialsInvalid."""
        ...

    @classmethod
    def content_of(
        cls,
        *,
        title: str,
        body: str,
        data: Mapping[str, Any],
        part: Mapping[str, Any],
        credentials: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What a message with this content looks like on this channel (JSON-able)."""
        ...

    def send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]: ...


class AdapterConfigurationError(Exception):
    """The application's credentials for this channel are missing or unusable."""


class CredentialsInvalid(ValueError):
    """Credentials that cannot work; the message says why, for a person to act on."""


def object_schema(
    description: str, properties: Mapping[str, Any], *, optional: Iterable[str] = ()
) -> dict[str, Any]:
    """An adapter's `content_schema`: an object of these properties, each required but the
    `optional` ones, and nothing else."""
    return {
        "type": "object",
        "description": description,
        "required": [name for name in properties if name not in set(optional)],
        "properties": dict(properties),
        "additionalProperties": False,
    }


TEXT: Mapping[str, Any] = {"type": "string"}
TEXT_OR_NULL: Mapping[str, Any] = {"type": ["string", "null"]}
JSON_OBJECT: Mapping[str, Any] = {"type": "object", "additionalProperties": {}}


def credential_fields_allowed(values: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    """Raises CredentialsInvalid naming the fields of `values` that are not `allowed`."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise CredentialsInvalid(
            f"{what} credentials have no field {', '.join(unknown)}; known: {', '.join(allowed)}."
        )


def credential_text(
    values: Mapping[str, Any], name: str, what: str, *, required: bool = True
) -> str:
    """One line of text of the credentials, stripped ("" when absent and not `required`)."""
    value = values.get(name)
    if value is None or value == "":
        if required:
            raise CredentialsInvalid(f"{what} credentials need {name!r}.")
        return ""
    if not isinstance(value, str) or "\x00" in value or "\r" in value or "\n" in value:
        raise CredentialsInvalid(f"{what} credentials: {name!r} must be one line of text.")
    return value.strip()
