"""Quiet hours through a real Celery worker: a message of a category to a user inside their
quiet hours is created pending and held (its event says why), nothing reaches the provider
while they last, and the sweep sends it once they end; a required category is not held."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import Category
from messaging import delivery
from messaging.models import Message, MessageEvent, User
from messaging.services.users import user_identify

from .conftest import wait_for
from .test_delivery import IOS_OK, send, subscribe, terminal

pytestmark = pytest.mark.e2e


def test_a_held_message_waits_for_the_end_of_quiet_hours_and_then_goes(live_app, fake_providers):
    Category.objects.create(application=live_app, key="offers", name="Offers")
    Category.objects.create(application=live_app, key="security", name="Codes", required=True)
    ios = subscribe(live_app, "iOSPush", IOS_OK)
    user_identify(external_user_id="sleeper", subscription=ios, actor="test")
    seoul = dt.timezone(dt.timedelta(hours=9))
    local = timezone.now().astimezone(seoul)
    User.objects.filter(external_user_id="sleeper").update(
        preferences={
            "quiet_hours": {
                "start": (local - dt.timedelta(hours=1)).strftime("%H:%M"),
                "end": (local + dt.timedelta(hours=2)).strftime("%H:%M"),
                "timezone": "Asia/Seoul",
            }
        }
    )
    before = fake_providers.apns_stats()["requests"]

    [held] = send(live_app, external_user_id="sleeper", category="offers")
    [code] = send(live_app, external_user_id="sleeper", category="security")

    wait_for(terminal([code]), what="the required category's message to be sent")
    message = Message.objects.get(pk=held)
    assert message.status == "pending" and message.enqueued_at is None
    assert dt.timedelta(hours=1, minutes=58) < message.send_after - timezone.now()
    event = MessageEvent.objects.get(message_id=held, type="held")
    assert event.details == {"reason": "quiet_hours", "until": message.send_after.isoformat()}
    delivery.pending_sweep()  # not due: the sweep leaves it
    assert Message.objects.get(pk=held).status == "pending"
    assert fake_providers.apns_stats()["requests"] - before == 1

    # The hours end (moved forward here rather than waited for): the sweep sends it.
    Message.objects.filter(pk=held).update(send_after=timezone.now() - dt.timedelta(seconds=1))

    def swept():
        delivery.pending_sweep()
        return terminal([held])()

    wait_for(swept, timeout=30, what="the held message to be sent")
    assert Message.objects.get(pk=held).status == "successful"
    assert fake_providers.apns_stats()["requests"] - before == 2
