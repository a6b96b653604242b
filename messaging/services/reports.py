"""What providers report about messages after sending: an SMS gateway's status callbacks.

`delivered` moves a successful message to `received` (the provider saw it reach the handset);
other reports (`undelivered`, `failed`, `sent`, ...) are recorded as `report` events with the
provider's own code, and leave the status as it is: the message was accepted by the provider,
and what happened later is history, not a new outcome."""

from __future__ import annotations

import contextlib

from django.utils import timezone

from core.exceptions import InvalidTransition

from ..models import Message, MessageEvent, MessageStatus
from .messages import message_report_status

SMS_PROVIDER = "provider:sms"


def message_provider_report(*, message: Message, status: str, details: dict) -> Message:
    """Records one provider report on a message (see the module docstring)."""
    MessageEvent.objects.create(
        message=message,
        type=MessageEvent.Type.REPORT,
        status="",
        at=timezone.now(),
        details={"provider_status": status, **details},
    )
    if status == "delivered":
        # Already converted, or failed meanwhile: the report stays an event. The service locks
        # the row, so a report that outruns the worker's commit waits for it.
        with contextlib.suppress(InvalidTransition):
            message = message_report_status(
                message=message, status=MessageStatus.RECEIVED, actor=SMS_PROVIDER
            )
    return message
