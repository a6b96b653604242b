"""An erasure that meets a worker in the middle of sending one of the user's messages: it waits
for the worker's row lock, then deletes the message with the event the worker wrote (no
foreign key left dangling at commit)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.services import application_create
from messaging.models import Message, MessageEvent, MessageStatus, User
from messaging.services import erasure
from messaging.services.messages import Content, Delivery, message_send
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_erasure_waits_for_a_message_being_sent_and_deletes_its_events(db):
    application = application_create(name="concurrent")
    subscription = subscription_create(application, external_user_id="alice")
    [message] = message_send(
        application=application,
        subscriptions=[subscription],
        content=Content(title="Hi"),
        delivery=Delivery(),
    ).messages
    events_before = MessageEvent.objects.filter(message_id=message.pk).count()
    locked, erase_started = threading.Event(), threading.Event()
    worker_done_at: list[float] = []

    def worker():
        # What delivery does: the claim locks the row, the send runs, the result and its
        # event are written, and the transaction commits.
        try:
            with transaction.atomic():
                Message.objects.select_for_update().get(pk=message.pk)
                locked.set()
                erase_started.wait(5)
                time.sleep(0.5)  # the erasure is now waiting on this row
                Message.objects.filter(pk=message.pk).update(status=MessageStatus.SUCCESSFUL)
                MessageEvent.objects.create(
                    message_id=message.pk, type="status", status="successful", at=timezone.now()
                )
            worker_done_at.append(time.monotonic())
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    assert locked.wait(5)
    user = User.objects.get(external_user_id="alice")
    erase_started.set()
    counts = erasure.user_erase(user=user, actor="test")
    erased_at = time.monotonic()
    thread.join(10)

    assert worker_done_at and worker_done_at[0] <= erased_at
    # The worker's event, committed while the erasure waited, is deleted with the message.
    assert (counts["messages"], counts["message_events"]) == (1, events_before + 1)
    assert not Message.objects.filter(pk=message.pk).exists()
    assert not MessageEvent.objects.filter(message_id=message.pk).exists()
