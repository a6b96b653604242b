"""A channel adapter that exists only for tests: what a new provider channel's adapter
declares about itself, so that nothing outside its spec, its adapter and its fake changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import SendResult


class LineAdapter:
    channel = "Line"
    errors: Mapping[str, Any] = {}
    secret_fields = ("channel_secret",)
    content_schema = {
        "type": "object",
        "description": "the text.",
        "required": ["text"],
        "properties": {"text": {"type": "string"}},
        "additionalProperties": False,
    }

    @classmethod
    def clean_credentials(
        cls, values: Mapping[str, Any], *, default_subject: str = ""
    ) -> dict[str, Any]:
        from accounts.credentials import CredentialsInvalid

        if not values.get("channel_secret"):
            raise CredentialsInvalid("Line credentials need 'channel_secret'.")
        return {"channel_secret": str(values["channel_secret"]), "bot": values.get("bot", "")}

    @classmethod
    def content_of(cls, *, title, body, data, part, credentials=None) -> dict[str, Any]:
        return {"text": f"{title}\n{body}".strip()}

    def send_batch(self, credentials, messages) -> list[SendResult]:
        return [SendResult(message_id=m.message_id, ok=True) for m in messages]
