"""What each channel sends of a message's content: title, body and data serve every channel,
and a channel's own part (core.channels) takes precedence where it has a field for it (an
e-mail's subject, an SMS's text). The channel's adapter says it (`content_of`, the function
it builds its sends with), so a preview is what is sent. The SMS text must fit
MAX_SMS_SEGMENTS segments."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from django.utils.module_loading import import_string

from adapters import registry, sms
from core import channels

MAX_SMS_SEGMENTS = sms.MAX_SEGMENTS


def sms_text(*, body: str, parts: Mapping[str, Any] | None) -> tuple[str, str]:
    """The text an SMS sends (the adapter's `text_of`) and the field it comes from:
    `sms.text`, else `body`."""
    part = (parts or {}).get("sms") or {}
    text = sms.text_of(body=body, part=part)
    return (text, "sms.text") if part.get("text") else (text, "body")


def sms_text_check(*, body: str, parts: Mapping[str, Any] | None) -> None:
    """Raises InputInvalid naming `sms.text` or `body` when the SMS text takes more than
    MAX_SMS_SEGMENTS segments (the SMS spec's content check, the adapter's rule)."""
    channels.spec_of(channels.SMS).check_content(
        application=None, contents=[channels.PlainContent(body=body, parts=parts or {})]
    )


def channel_content(
    channel: str,
    *,
    title: str,
    body: str,
    data: dict,
    parts: Mapping[str, Any] | None,
    credentials: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a message to `channel` sends of this content. `credentials`: the application's
    stored credentials of the channel (e.g. the e-mail sender name used when the part gives
    none), as the adapter sends with them."""
    part = channels.part_for(channel, parts)
    # The in-app inbox is written locally (no adapter); its item is this.
    if channel == channels.IN_APP:
        return {
            "title": title,
            "body": body,
            "data": data,
            "image_url": part.get("image_url"),
            "action_url": part.get("action_url"),
        }
    adapter = _adapter_class(channel)
    if adapter is None:
        return {"title": title, "body": body, "data": data}
    return adapter.content_of(title=title, body=body, data=data, part=part, credentials=credentials)


def _adapter_class(channel: str) -> type | None:
    # The spec's adapter, or the settings' override (adapters.registry.adapter_path).
    path = registry.adapter_path(channel)
    return _imported(path) if path and registry.adapter_available(channel) else None


@cache
def _imported(path: str) -> type:
    return import_string(path)
