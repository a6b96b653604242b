"""A test message through a channel's adapter with given credentials, sent at once (not
queued), so an operator sees right away whether the credentials and the provider work."""

from __future__ import annotations

import hashlib
import json
import uuid

from django.conf import settings

from adapters import registry
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult
from core import channels

TEST_TITLE = "Automata-Signal test"
TEST_BODY = "This test message shows that the channel's credentials work."


class RecipientInvalid(ValueError):
    """The test recipient is not one this channel can send to."""


def _web_push_recipient(recipient: str) -> tuple[str, dict]:
    """A browser's PushSubscription.toJSON(): {"endpoint", "keys": {"p256dh", "auth"}}."""
    from adapters.webpush import endpoint_problem, keys_problem

    try:
        value = json.loads(recipient)
    except json.JSONDecodeError as exc:
        raise RecipientInvalid(
            'For WebPush, paste the browser\'s subscription: {"endpoint", "keys"}.'
        ) from exc
    if not isinstance(value, dict) or not isinstance(value.get("keys"), dict):
        raise RecipientInvalid('The subscription needs "endpoint" and "keys".')
    endpoint = str(value.get("endpoint", ""))
    problem = endpoint_problem(endpoint, settings.WEB_PUSH_ALLOWED_HOSTS) or keys_problem(
        value["keys"]
    )
    if problem:
        raise RecipientInvalid(problem)
    return endpoint, value["keys"]


def channel_test_send(*, channel: str, values: dict, recipient: str) -> SendResult:
    """Sends one test message to `recipient` (an address, a number, a device token, or for
    WebPush the browser's subscription JSON) with these credentials; the provider's answer."""
    recipient = recipient.strip()
    if not recipient:
        raise RecipientInvalid("Give a recipient for the test.")
    keys: dict = {}
    if channel == channels.WEB_PUSH:
        recipient, keys = _web_push_recipient(recipient)
    try:
        adapter = registry.get_adapter(channel)
    except registry.UnknownChannelError as exc:
        raise RecipientInvalid(f"No adapter sends {channel} in this installation.") from exc
    message_id = str(uuid.uuid4())
    message = OutboundMessage(
        message_id=message_id,
        token=recipient,
        title=TEST_TITLE,
        body=TEST_BODY,
        keys=keys,
        parts={"subject": TEST_TITLE} if channel == channels.EMAIL else {},
    )
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    credentials = Credentials(key=f"test:{channel}:{digest}", values=values)
    try:
        [result] = adapter.send_batch(credentials, [message])
    except AdapterConfigurationError as exc:
        return SendResult(
            message_id=message_id,
            ok=False,
            error_code="credentials_invalid",
            error_message=str(exc),
            permanent=True,
        )
    return result
