"""Per-application quotas: exact daily and monthly limits, windows that roll over, and the
API's 429 with Retry-After."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connections, transaction
from django.utils import timezone

from accounts.models import MessageQuota
from accounts.quotas import quota_consume
from core.exceptions import QuotaExceeded
from messaging.models import Message
from messaging.services.subscriptions import subscription_disable
from tests.assertions import assert_error
from tests.conftest import api_client, application_with_keys, subscription_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages"


def limit(application, *, daily=None, monthly=None) -> MessageQuota:
    MessageQuota.objects.filter(application=application).update(
        daily_limit=daily, monthly_limit=monthly
    )
    return MessageQuota.objects.get(application=application)


def used(application) -> tuple[int, int]:
    quota = MessageQuota.objects.get(application=application)
    return quota.day_used, quota.month_used


def seconds_until_next_utc_midnight() -> float:
    now = timezone.now()
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return (midnight - now).total_seconds()


# --- quota_consume ----------------------------------------------------------------------------


def test_usage_is_counted_in_the_day_and_the_month(app):
    application = app.application

    quota_consume(application=application, count=3)
    quota_consume(application=application, count=4)

    quota = MessageQuota.objects.get(application=application)
    today = timezone.now().date()
    assert (quota.day, quota.day_used) == (today, 7)
    assert (quota.month, quota.month_used) == (today.replace(day=1), 7)


def test_the_daily_limit_can_be_reached_but_not_passed(app):
    application = app.application
    limit(application, daily=5)

    quota_consume(application=application, count=5)
    with pytest.raises(QuotaExceeded) as refused:
        quota_consume(application=application, count=1)

    assert used(application) == (5, 5)
    assert refused.value.details == {"limit": 5, "used": 5, "requested": 1}
    assert "daily" in refused.value.message
    assert 0 < refused.value.retry_after <= seconds_until_next_utc_midnight() + 2


def test_a_request_larger_than_whats_left_is_refused_whole(app):
    application = app.application
    limit(application, daily=5)
    quota_consume(application=application, count=3)

    with pytest.raises(QuotaExceeded):
        quota_consume(application=application, count=3)

    assert used(application) == (3, 3)
    quota_consume(application=application, count=2)
    assert used(application) == (5, 5)


def test_the_monthly_limit_can_be_reached_but_not_passed(app):
    application = app.application
    limit(application, daily=100, monthly=4)
    quota_consume(application=application, count=4)

    with pytest.raises(QuotaExceeded) as refused:
        quota_consume(application=application, count=1)

    assert used(application) == (4, 4)
    assert "monthly" in refused.value.message
    assert refused.value.details == {"limit": 4, "used": 4, "requested": 1}
    now = timezone.now()
    first_of_next = (now.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    next_month = dt.datetime.combine(first_of_next, dt.time(), dt.UTC)
    assert 0 < refused.value.retry_after <= (next_month - now).total_seconds() + 2
    # A new day does not help while the month is used up.
    MessageQuota.objects.filter(application=application).update(
        day=timezone.now().date() - dt.timedelta(days=1)
    )
    with pytest.raises(QuotaExceeded):
        quota_consume(application=application, count=1)


def test_a_new_day_starts_from_zero(app):
    application = app.application
    limit(application, daily=2)
    quota_consume(application=application, count=2)
    today = timezone.now().date()
    MessageQuota.objects.filter(application=application).update(day=today - dt.timedelta(days=1))

    quota_consume(application=application, count=2)

    quota = MessageQuota.objects.get(application=application)
    assert (quota.day, quota.day_used) == (today, 2)
    assert quota.month_used == 4  # the month goes on counting


def test_a_new_month_starts_from_zero(app):
    application = app.application
    limit(application, monthly=2)
    quota_consume(application=application, count=2)
    this_month = timezone.now().date().replace(day=1)
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    MessageQuota.objects.filter(application=application).update(month=last_month)

    quota_consume(application=application, count=2)

    quota = MessageQuota.objects.get(application=application)
    assert (quota.month, quota.month_used) == (this_month, 2)


def test_no_limit_means_unlimited(app):
    quota_consume(application=app.application, count=1_000_000)
    assert used(app.application) == (1_000_000, 1_000_000)


def test_a_missing_quota_row_is_created_unlimited(app):
    MessageQuota.objects.filter(application=app.application).delete()

    quota_consume(application=app.application, count=2)

    assert used(app.application) == (2, 2)


def test_a_rolled_back_send_returns_its_quota(app):
    application = app.application
    limit(application, daily=5)
    quota_consume(application=application, count=1)

    with pytest.raises(RuntimeError), transaction.atomic():
        quota_consume(application=application, count=3)
        raise RuntimeError("the insert failed")

    assert used(application) == (1, 1)


def test_nothing_to_send_counts_nothing(app):
    limit(app.application, daily=0)
    quota_consume(application=app.application, count=0)
    assert used(app.application) == (0, 0)


# --- Through the API --------------------------------------------------------------------------


def post(client, body):
    return client.post(URL, body, format="json")


def test_over_the_daily_quota_is_429_with_retry_after_and_creates_nothing(server_api, app):
    application = app.application
    subscription = subscription_create(application)
    limit(application, daily=1)
    assert post(
        server_api, {"subscription_id": str(subscription.pk), "title": "x"}
    ).status_code == (202)

    response = post(server_api, {"subscription_id": str(subscription.pk), "title": "y"})

    details = assert_error(response, 429, "quota_exceeded")
    assert details == {"limit": 1, "used": 1, "requested": 1}
    retry_after = response["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) > 0
    assert int(retry_after) <= seconds_until_next_utc_midnight() + 2
    assert list(Message.objects.values_list("title", flat=True)) == ["x"]
    assert used(application) == (1, 1)


def test_over_the_monthly_quota_is_429(server_api, app):
    application = app.application
    subscription = subscription_create(application)
    limit(application, monthly=1)
    post(server_api, {"subscription_id": str(subscription.pk), "title": "x"})

    response = post(server_api, {"subscription_id": str(subscription.pk), "title": "y"})

    assert_error(response, 429, "quota_exceeded")
    assert int(response["Retry-After"]) > 0
    assert Message.objects.count() == 1
    assert used(application) == (1, 1)


def test_a_request_counts_every_message_it_creates(server_api, app):
    application = app.application
    subscriptions = [subscription_create(application) for _ in range(4)]
    subscription_disable(subscription_id=subscriptions[3].pk, reason="test")
    limit(application, daily=4)
    all_ids = [str(s.pk) for s in subscriptions]

    # Three sendable messages (the disabled one is skipped and costs nothing).
    accepted = post(server_api, {"subscription_ids": all_ids, "title": "x"})
    assert accepted.status_code == 202
    assert used(application) == (3, 3)

    refused = post(server_api, {"subscription_ids": all_ids[:2], "title": "x"})
    assert assert_error(refused, 429, "quota_exceeded")["requested"] == 2
    assert Message.objects.count() == 3
    assert used(application) == (3, 3)

    assert post(server_api, {"subscription_id": all_ids[0], "title": "x"}).status_code == 202
    assert used(application) == (4, 4)


def test_quotas_are_per_application(server_api, other_server_api, app, other_app):
    mine = subscription_create(app.application)
    theirs = subscription_create(other_app.application)
    limit(app.application, daily=0)

    assert_error(
        post(server_api, {"subscription_id": str(mine.pk), "title": "x"}), 429, "quota_exceeded"
    )
    response = post(other_server_api, {"subscription_id": str(theirs.pk), "title": "x"})

    assert response.status_code == 202
    assert used(other_app.application) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_never_pass_the_daily_limit():
    keys = application_with_keys("concurrent-quota")
    subscription = subscription_create(keys.application)
    limit(keys.application, daily=10)
    count = 30
    barrier = threading.Barrier(count)
    statuses: list[int | None] = [None] * count

    def send(i: int) -> None:
        try:
            client = api_client(keys.server.raw)
            barrier.wait(timeout=20)
            response = post(client, {"subscription_id": str(subscription.pk), "title": f"{i}"})
            statuses[i] = response.status_code
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [202] * 10 + [429] * 20
    assert Message.objects.filter(application=keys.application).count() == 10
    assert used(keys.application) == (10, 10)
