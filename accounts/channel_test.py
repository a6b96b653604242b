"""A test message through a channel's adapter with given credentials, sent at once (not
queued), so an operator sees right away whether the credentials and the provider work."""

from __future__ import annotations

import hashlib
import json
import uuid

from django.core.exceptions import ValidationError

from adapters import registry
from adapters.base import AdapterConfigurationError, Credentials, OutboundMessage, SendResult
from core import channels

TEST_TITLE = "Automata-Signal test"
TEST_BODY = "This test message shows that the channel's credentials work."


class RecipientInvalid(ValueError):
    """The test recipient is not one this channel can send to."""


def _subscription_recipient(spec: channels.ChannelSpec, recipient: str) -> tuple[str, dict]:
    """For a channel whose token comes with keys (WebPush): the browser's
    PushSubscription.toJSON(), {"endpoint", "keys": {"p256dh", "auth"}}."""
    from adapters.webpush import keys_problem

    try:
        value = json.loads(recipient)
    except json.JSONDecodeError as exc:
        raise RecipientInvalid(
            f'For {spec.type}, paste the browser\'s subscription: {{"endpoint", "keys"}}.'
        ) from exc
    if not isinstance(value, dict) or not isinstance(value.get("keys"), dict):
        raise RecipientInvalid('The subscription needs "endpoint" and "keys".')
    try:
        endpoint = spec.token_rule(str(value.get("endpoint", "")))
    except ValidationError as exc:
        raise RecipientInvalid(" ".join(exc.messages)) from exc
    if problem := keys_problem(value["keys"]):
        raise RecipientInvalid(problem)
    return endpoint, value["keys"]


def channel_test_send(*, channel: str, values: dict, recipient: str) -> SendResult:
    """Sends one test message to `recipient` (an address, a number, a device token, or for
    WebPush the browser's subscription JSON) with these credentials; the provider's answer."""
    recipient = recipient.strip()
    if not recipient:
        raise RecipientInvalid("Give a recipient for the test.")
    keys: dict = {}
    spec = channels.SPECS.get(channel)
    if spec is not None and spec.token_keys:
        recipient, keys = _subscription_recipient(spec, recipient)
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
        parts={},  # the title serves where a channel's part has none (an e-mail's subject)
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
