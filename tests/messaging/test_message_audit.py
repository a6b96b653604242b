"""Messages retried or cancelled by hand leave one audit row per call or admin action, with
the count and the first ids; a campaign's cancel is audited as the campaign's alone."""

from __future__ import annotations

import pytest

from accounts import audit
from accounts.models import AuditEntry, MessageQuota
from messaging.models import Message
from messaging.services import messages as message_services
from messaging.services.messages import (
    Content,
    Delivery,
    message_send,
    messages_cancel,
    messages_retry,
)
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

ADMIN_MESSAGES = "/admin/messaging/message/"


def sent(app, n: int = 1) -> list[Message]:
    subscriptions = [subscription_create(app.application) for _ in range(n)]
    return message_send(
        application=app.application,
        subscriptions=subscriptions,
        content=Content(title="Hi", body="There"),
        delivery=Delivery(),
    ).messages


def failed(messages: list[Message]) -> list[Message]:
    for message in messages:
        message.fail()
        message.error_code = "channel_unavailable"
        message.save(update_fields=["status", "error_code"])
    return messages


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def test_an_api_retry_is_one_row_with_the_key(app, server_api):
    (message,) = failed(sent(app))

    assert server_api.post(f"/api/v1/messages/{message.pk}/retry").status_code == 202
    assert server_api.post(f"/api/v1/messages/{message.pk}/retry").status_code == 409

    (entry,) = entries(audit.MESSAGES_RETRIED)
    assert entry.actor == f"api_key:{app.server.api_key.prefix}"
    assert (entry.object_type, entry.object_id) == ("message", str(message.pk))
    assert entry.details == {"count": 1, "message_ids": [str(message.pk)]}


def test_the_admin_retry_action_is_one_row_for_the_lot(admin_client, app):
    failing = failed(sent(app, 3))
    pending = sent(app)

    admin_client.post(
        ADMIN_MESSAGES,
        {
            "action": "retry_failed",
            "_selected_action": [str(m.pk) for m in [*failing, *pending]],
            "confirm": "yes",
        },
    )

    (entry,) = entries(audit.MESSAGES_RETRIED)
    assert entry.actor == "admin:root" and entry.application_id == app.application.pk
    assert entry.details["count"] == 3
    assert sorted(entry.details["message_ids"]) == sorted(str(m.pk) for m in failing)
    assert entry.object_id == ""  # several messages: the ids are in the details


def test_the_admin_cancel_action_is_one_row(admin_client, app):
    pending = sent(app, 2)
    (done,) = failed(sent(app))

    admin_client.post(
        ADMIN_MESSAGES,
        {
            "action": "cancel_pending",
            "_selected_action": [str(m.pk) for m in [*pending, done]],
            "confirm": "yes",
        },
    )

    (entry,) = entries(audit.MESSAGES_CANCELLED)
    assert entry.actor == "admin:root"
    assert entry.details["count"] == 2
    assert sorted(entry.details["message_ids"]) == sorted(str(m.pk) for m in pending)


def test_nothing_cancelled_or_a_cancel_not_by_hand_records_nothing(app):
    pending = sent(app, 2)
    (done,) = failed(sent(app))

    assert messages_cancel(message_ids=[done.pk], actor="admin:root", by_hand=True) == 0
    assert messages_cancel(message_ids=[m.pk for m in pending], actor="system") == 2

    assert entries(audit.MESSAGES_CANCELLED) == []


def test_the_row_names_at_most_the_first_ids_and_counts_them_all(app, monkeypatch):
    monkeypatch.setattr(message_services, "AUDITED_IDS", 2)
    failing = failed(sent(app, 3))

    outcome = messages_retry(messages=failing, actor="admin:root")

    assert (outcome.retried, outcome.refused, outcome.quota_exceeded) == (3, 0, None)
    (entry,) = entries(audit.MESSAGES_RETRIED)
    assert entry.details == {"count": 3, "message_ids": [str(m.pk) for m in failing[:2]]}


def test_retries_stopped_by_the_quota_are_audited_as_far_as_they_went(app):
    failing = failed(sent(app, 3))
    MessageQuota.objects.filter(application=app.application).update(daily_limit=4)

    outcome = messages_retry(messages=failing, actor="admin:root")

    assert outcome.retried == 1 and outcome.quota_exceeded is not None
    (entry,) = entries(audit.MESSAGES_RETRIED)
    assert entry.details == {"count": 1, "message_ids": [str(failing[0].pk)]}
