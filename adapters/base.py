"""The contract between the delivery pipeline and the channel adapters.

Adapters import no models: the pipeline hands them plain `OutboundMessage`s and the
application's decrypted credentials, and gets back exactly one `SendResult` per message,
in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


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
    # Email only: the signed one-click unsubscribe URL (RFC 8058) of a campaign's e-mail; None
    # for one-off messages, which carry no List-Unsubscribe.
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


class ChannelAdapter(Protocol):
    """Sends a batch of messages of one channel for one application."""

    channel: str

    def send_batch(
        self, credentials: Credentials, messages: Sequence[OutboundMessage]
    ) -> list[SendResult]: ...


class AdapterConfigurationError(Exception):
    """The application's credentials for this channel are missing or unusable."""
