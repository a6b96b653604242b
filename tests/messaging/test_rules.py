"""The recipients' rules where targets become messages (messaging.rules through
message_send): opt-outs, the frequency cap and quiet hours, on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connections, transaction
from django.utils import timezone

from accounts.models import Category
from messaging.models import FrequencyWindow, Message, MessageEvent, User
from messaging.rules import quiet_until, rules_for
from messaging.services.messages import Content, Delivery, message_send
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db(transaction=True)

CONTENT = Content(title="t", body="b")


def category(application, key="offers", **fields) -> Category:
    return Category.objects.create(application=application, key=key, name=key.title(), **fields)


def send(application, subscriptions, key="offers"):
    return message_send(
        application=application,
        subscriptions=subscriptions,
        content=CONTENT,
        delivery=Delivery(),
        send_rules=rules_for(application=application, category=key),
    )


def test_opt_outs_leave_targets_out_with_their_reason(app):
    application = app.application
    category(application)
    push = subscription_create(application, external_user_id="u1")
    mail = subscription_create(
        application, type="Email", token="u1@example.com", external_user_id="u1"
    )
    other = subscription_create(application, external_user_id="u2")
    User.objects.filter(external_user_id="u1").update(
        preferences={"categories": {"offers": {"channels": {"iOSPush": False}}}}
    )
    User.objects.filter(external_user_id="u2").update(preferences={"channels": {"iOSPush": False}})

    outcome = send(application, [push, mail, other])

    assert [m.subscription_id for m in outcome.messages] == [mail.pk]
    assert outcome.skipped_by_reason == {"opted_out": 2}
    assert Message.objects.get().category == "offers"


def test_a_category_off_by_default_reaches_only_who_turned_it_on(app):
    application = app.application
    category(application, default_enabled=False)
    quiet = subscription_create(application, external_user_id="u1")
    keen = subscription_create(application, external_user_id="u2")
    User.objects.filter(external_user_id="u2").update(
        preferences={"categories": {"offers": {"enabled": True}}}
    )

    outcome = send(application, [quiet, keen])

    assert [m.subscription_id for m in outcome.messages] == [keen.pk]


def test_a_required_category_and_no_category_pass_every_rule(app):
    application = app.application
    category(application, key="security", required=True)
    application.frequency_cap = {"max": 1, "per_seconds": 3600}
    application.save()
    push = subscription_create(application, external_user_id="u1")
    User.objects.update(
        preferences={
            "channels": {"iOSPush": False},
            "quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"},
        }
    )
    for _ in range(3):
        assert len(send(application, [push], key="security").messages) == 1
        assert len(send(application, [push], key=None).messages) == 1
    assert not FrequencyWindow.objects.exists()
    assert not Message.objects.filter(send_after__isnull=False).exists()


def test_the_cap_counts_over_all_channels_and_a_rolled_back_batch_gives_its_slots_back(app):
    application = app.application
    category(application)
    application.frequency_cap = {"max": 3, "per_seconds": 3600}
    application.save()
    push = subscription_create(application, external_user_id="u1")
    mail = subscription_create(
        application, type="Email", token="u1@example.com", external_user_id="u1"
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        send(application, [push, mail])
        raise RuntimeError

    first = send(application, [push, mail])
    second = send(application, [push, mail])

    assert len(first.messages) == 2
    assert len(second.messages) == 1 and second.skipped_by_reason == {"frequency_cap": 1}
    assert len(FrequencyWindow.objects.get().sent) == 3
    # Out of the window, the slots are free again.
    FrequencyWindow.objects.update(sent=[timezone.now() - dt.timedelta(hours=2)] * 3)
    assert len(send(application, [push, mail]).messages) == 2


def test_two_batches_at_once_never_both_take_the_last_slot(app):
    application = app.application
    category(application)
    application.frequency_cap = {"max": 1, "per_seconds": 3600}
    application.save()
    push = subscription_create(application, external_user_id="u1")
    results, inside = [], threading.Barrier(2)

    def batch():
        try:
            with transaction.atomic():
                inside.wait(timeout=10)
                results.append(len(send(application, [push]).messages))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results) == [0, 1]
    assert Message.objects.count() == 1


def test_quiet_hours_hold_a_message_until_they_end(app):
    application = app.application
    category(application)
    push = subscription_create(application, external_user_id="u1", timezone="Asia/Seoul")
    now = timezone.now().astimezone(dt.timezone(dt.timedelta(hours=9)))
    start = (now - dt.timedelta(hours=1)).strftime("%H:%M")
    end = (now + dt.timedelta(hours=1)).strftime("%H:%M")
    User.objects.update(preferences={"quiet_hours": {"start": start, "end": end}})

    outcome = send(application, [push])

    message = Message.objects.get()
    assert message.status == "pending" and message.enqueued_at is None
    assert dt.timedelta(minutes=58) < message.send_after - now <= dt.timedelta(hours=1)
    assert outcome.scheduled == 1
    event = MessageEvent.objects.get(message=message)
    assert event.type == "held" and event.details["reason"] == "quiet_hours"


@pytest.mark.parametrize(
    ("at", "window", "expected"),
    [
        # Across midnight: 23:30 local holds until 08:00 the next day.
        (
            "2026-12-07T14:30:00+00:00",
            ("22:00", "08:00", "Asia/Seoul"),
            "2026-12-07T23:00:00+00:00",
        ),
        # 07:00 local, still inside the window that began the evening before.
        (
            "2026-12-07T22:00:00+00:00",
            ("22:00", "08:00", "Asia/Seoul"),
            "2026-12-07T23:00:00+00:00",
        ),
        # Outside.
        ("2026-12-07T03:00:00+00:00", ("22:00", "08:00", "Asia/Seoul"), None),
        # The night Europe/Berlin leaves summer time (2026-10-25): 22:00 CEST to 08:00 CET.
        (
            "2026-10-24T21:00:00+00:00",
            ("22:00", "08:00", "Europe/Berlin"),
            "2026-10-25T07:00:00+00:00",
        ),
        # The night it enters summer time (2026-03-29): 08:00 CEST is 06:00 UTC.
        (
            "2026-03-28T22:00:00+00:00",
            ("22:00", "08:00", "Europe/Berlin"),
            "2026-03-29T06:00:00+00:00",
        ),
        # An end inside the skipped hour (02:30 does not exist that night): its first moment after.
        (
            "2026-03-29T00:30:00+00:00",
            ("01:00", "02:30", "Europe/Berlin"),
            "2026-03-29T01:30:00+00:00",
        ),
    ],
)
def test_quiet_hours_across_midnight_and_dst(at, window, expected):
    start, end, zone = window
    until = quiet_until(
        {"start": start, "end": end, "timezone": zone}, "", dt.datetime.fromisoformat(at)
    )
    assert (until.isoformat() if until else None) == expected
