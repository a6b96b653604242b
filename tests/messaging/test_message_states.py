"""The message state machine: exactly the allowed transitions, and the client's reports on top."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from django_fsm import TransitionNotAllowed

from core.exceptions import InvalidTransition
from messaging.models import Message, MessageEvent, MessageStatus
from messaging.services.messages import Content, Delivery, message_report_status, message_send
from messaging.signals import message_statuses_changed
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

S = MessageStatus
TRANSITIONS = {"succeed": S.SUCCESSFUL, "fail": S.FAILED, "cancel": S.CANCELLED}
TRANSITIONS |= {"receive": S.RECEIVED, "convert": S.CONVERTED}
ALLOWED = {
    (S.PENDING, "succeed"),
    (S.PENDING, "fail"),
    (S.PENDING, "cancel"),
    (S.SUCCESSFUL, "receive"),
    (S.SUCCESSFUL, "convert"),
    (S.RECEIVED, "convert"),
}
EVERY_PAIR = [(status, name) for status in S for name in TRANSITIONS]

recorded: list[Counter] = []


def record_transitions(*, transitions: Counter, **_signal) -> None:
    recorded.append(Counter(transitions))


@pytest.fixture
def listener():
    message_statuses_changed.connect(record_transitions)
    recorded.clear()
    yield recorded
    message_statuses_changed.disconnect(record_transitions)
    recorded.clear()


RUN = uuid.uuid4()


@pytest.fixture
def message(app) -> Message:
    """A pending message of a campaign run (whose statistics the listeners keep)."""
    [message] = message_send(
        application=app.application,
        subscriptions=[subscription_create(app.application)],
        content=Content(title="Hi"),
        delivery=Delivery(),
        campaign_run_id=RUN,
    ).messages
    return message


def in_status(message: Message, status: str) -> Message:
    Message.objects.filter(pk=message.pk).update(status=status)
    return Message.objects.get(pk=message.pk)


def test_the_model_declares_exactly_the_contracts_transitions(message):
    declared = {(t.source, t.name, t.target) for t in message.get_all_status_transitions()}

    assert declared == {(source, name, TRANSITIONS[name]) for source, name in ALLOWED}


@pytest.mark.parametrize(("source", "name"), sorted(ALLOWED))
def test_an_allowed_transition_moves_the_status(message, source, name):
    message = in_status(message, source)

    getattr(message, name)()
    message.save(update_fields=["status"])

    assert Message.objects.get(pk=message.pk).status == TRANSITIONS[name]


@pytest.mark.parametrize(("source", "name"), [pair for pair in EVERY_PAIR if pair not in ALLOWED])
def test_every_other_transition_is_refused(message, source, name):
    message = in_status(message, source)

    with pytest.raises(TransitionNotAllowed):
        getattr(message, name)()

    assert message.status == source


# --- message_report_status ----------------------------------------------------------------------


def report(message, status):
    return message_report_status(message=message, status=status, actor="test")


def status_events(message) -> list[tuple[str, dict]]:
    return list(
        MessageEvent.objects.filter(message=message, type="status")
        .order_by("at", "id")
        .values_list("status", "details")
    )


def test_received_then_converted_records_events_and_tells_the_listeners(message, listener):
    message = in_status(message, S.SUCCESSFUL)

    assert report(message, "received").status == S.RECEIVED
    assert report(message, "converted").status == S.CONVERTED

    assert Message.objects.get(pk=message.pk).status == S.CONVERTED
    assert status_events(message) == [
        ("received", {"actor": "test"}),
        ("converted", {"actor": "test"}),
    ]
    assert listener == [
        Counter({(RUN, "successful", "received"): 1}),
        Counter({(RUN, "received", "converted"): 1}),
    ]


def test_a_report_on_a_message_of_no_campaign_run_tells_nobody(app, listener):
    [message] = message_send(
        application=app.application,
        subscriptions=[subscription_create(app.application)],
        content=Content(title="Hi"),
        delivery=Delivery(),
    ).messages
    message = in_status(message, S.SUCCESSFUL)

    report(message, "received")

    assert status_events(message) == [("received", {"actor": "test"})]
    assert listener == []


def test_converted_may_follow_successful_directly(message):
    message = in_status(message, S.SUCCESSFUL)

    report(message, "converted")

    assert Message.objects.get(pk=message.pk).status == S.CONVERTED


@pytest.mark.parametrize("status", ["received", "converted"])
def test_the_same_status_again_is_a_no_op(message, listener, status):
    message = in_status(message, status)

    assert report(message, status).status == status

    assert status_events(message) == []
    assert listener == []


@pytest.mark.parametrize(
    ("source", "requested"),
    [
        (S.PENDING, "received"),
        (S.PENDING, "converted"),
        (S.FAILED, "received"),
        (S.FAILED, "converted"),
        (S.CANCELLED, "received"),
        (S.CANCELLED, "converted"),
        (S.CONVERTED, "received"),
    ],
)
def test_an_illegal_report_raises_and_writes_nothing(message, listener, source, requested):
    message = in_status(message, source)

    with pytest.raises(InvalidTransition) as refused:
        report(message, requested)

    assert refused.value.code == "invalid_transition"
    assert refused.value.details == {"status": source, "requested": requested}
    assert Message.objects.get(pk=message.pk).status == source
    assert status_events(message) == []
    assert listener == []


def test_a_report_reads_the_current_status_not_a_stale_copy(message):
    stale = Message.objects.get(pk=message.pk)  # still pending in memory
    in_status(message, S.SUCCESSFUL)

    assert report(stale, "received").status == S.RECEIVED
