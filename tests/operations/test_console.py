"""The operators' console: the delivery rollups written by real batches, their upserts from
concurrent workers, the console page over seeded rollups, and the message log's paginator."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import timedelta
from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign, CampaignRun
from core.admin_kit import EstimatedCountPaginator
from messaging import delivery
from messaging.delivery import record, rollups
from messaging.models import DeliveryRollup, ErrorRollup, Message
from messaging.services.subscriptions import subscription_disable
from messaging.tasks import purge_rollups
from operations import console
from tests.conftest import subscription_create
from tests.e2e.conftest import fake_providers  # noqa: F401 (fixtures of the delivery tests)
from tests.messaging.conftest import fake_app, providers  # noqa: F401
from tests.messaging.test_delivery_pipeline import ANDROID_OK, ids, ios_token, send

pytestmark = pytest.mark.django_db

MESSAGE_TABLE = re.compile(r"\bmessaging_message\b")


def rollup_of(channel: str) -> dict:
    rows = DeliveryRollup.objects.filter(channel=channel)
    counters = ("sent", "successful", "failed_permanent", "failed_temporary")
    totals = {name: sum(getattr(r, name) for r in rows) for name in counters}
    histogram = [0] * rollups.BUCKETS
    for row in rows:
        for i, count in enumerate(row.latency):
            histogram[i] += count
    return totals | {"histogram": histogram, "rows": list(rows)}


# --- Rollups written by delivery ------------------------------------------------------------


def test_a_delivered_batch_is_rolled_up_per_channel(fake_app, providers):  # noqa: F811
    ok = [subscription_create(fake_app, token=ios_token()) for _ in range(3)]
    permanent = subscription_create(fake_app, token=ios_token("0413"))
    temporary = subscription_create(fake_app, token=ios_token("0500"))
    disabled = subscription_create(fake_app, token=ios_token())
    android = subscription_create(fake_app, type="AndroidPush", token=ANDROID_OK)
    messages = send(fake_app, [*ok, permanent, temporary, disabled, android])
    subscription_disable(subscription_id=disabled.pk, reason="test", actor="test")
    before = timezone.now()

    delivery.deliver_batch(ids(messages), queue="messages")

    ios = rollup_of("iOSPush")
    # The disabled subscription's message failed without an attempt.
    assert (ios["sent"], ios["successful"]) == (5, 3)
    assert (ios["failed_permanent"], ios["failed_temporary"]) == (2, 1)
    assert sum(ios["histogram"]) == 5  # one latency per attempt
    [row] = ios["rows"]
    assert row.shard == os.getpid() % rollups.SHARDS
    assert row.application_id == fake_app.pk
    assert before.replace(second=0, microsecond=0) <= row.minute <= timezone.now()
    assert row.minute.second == 0 and row.minute.microsecond == 0
    android_rollup = rollup_of("AndroidPush")
    assert (android_rollup["sent"], android_rollup["successful"]) == (1, 1)
    codes = {
        e.error_code: e.count for e in ErrorRollup.objects.filter(channel="iOSPush")
    }  # as recorded on the failed messages
    recorded = set(
        Message.objects.filter(pk__in=[m.pk for m in messages])
        .exclude(error_code="")
        .exclude(subscription=disabled)
        .values_list("error_code", flat=True)
    )
    assert set(codes) == recorded and sum(codes.values()) == 2


def test_the_p95_read_from_the_rollup_is_in_the_bucket_of_the_real_p95(fake_app, providers):  # noqa: F811
    messages = send(fake_app, [subscription_create(fake_app, token=ios_token()) for _ in range(40)])

    delivery.deliver_batch(ids(messages))

    latencies = sorted(
        e.details["latency_ms"]
        for m in Message.objects.filter(pk__in=[m.pk for m in messages])
        for e in m.events.filter(type="attempt")
    )
    exact = latencies[int(0.95 * len(latencies)) - 1]  # nearest rank
    estimate = console.percentile_ms(rollup_of("iOSPush")["histogram"])
    bucket = rollups.latency_bucket(exact)
    lower = rollups.BOUNDS_MS[bucket - 1] if bucket else 0.0
    assert lower <= estimate <= rollups.BOUNDS_MS[bucket]


def test_batches_of_one_minute_add_up_element_wise():
    now = timezone.now()
    app_id = uuid.uuid4()

    def batch(latencies, ok=True):
        messages, results = [], {}
        for latency in latencies:
            message = SimpleNamespace(
                id=uuid.uuid4(), application_id=app_id, channel="SMS",
                status="successful" if ok else "failed", error_code="" if ok else "21211",
            )  # fmt: skip
            messages.append(message)
            results[message.id] = SimpleNamespace(
                ok=ok, error_code=None if ok else "21211", latency_ms=latency
            )
        rollups.add_batch(messages, results, now)

    batch([0.5, 3.0, 3.0])
    batch([3.0, 250.0])
    batch([40_000.0, 500_000.0], ok=False)

    [row] = DeliveryRollup.objects.filter(channel="SMS")
    expected = [0] * rollups.BUCKETS
    for latency in (0.5, 3.0, 3.0, 3.0, 250.0, 40_000.0, 500_000.0):
        expected[rollups.latency_bucket(latency)] += 1
    assert row.latency == expected
    assert expected[-1] == 1  # slower than the last bound
    assert (row.sent, row.successful, row.failed_permanent) == (7, 5, 2)
    [error] = ErrorRollup.objects.all()
    assert (error.error_code, error.count) == ("21211", 2)


def test_the_unsent_codes_are_the_pipelines():
    assert {code for code, _text in record.UNSENDABLE.values()} == rollups.NOT_ATTEMPTED


def test_percentiles_of_a_known_histogram():
    histogram = [0] * rollups.BUCKETS
    assert console.percentile_ms(histogram) is None
    histogram[rollups.latency_bucket(50.0)] = 95
    histogram[rollups.latency_bucket(2000.0)] = 5
    p95 = console.percentile_ms(histogram)
    bucket = rollups.latency_bucket(50.0)
    assert rollups.BOUNDS_MS[bucket - 1] < p95 <= rollups.BOUNDS_MS[bucket]
    histogram[rollups.latency_bucket(2000.0)] = 10
    assert console.percentile_ms(histogram) > 1000


def test_rows_older_than_the_retention_are_purged(settings):
    now = timezone.now()
    app_id = uuid.uuid4()
    for age in (timedelta(days=31), timedelta(days=1)):
        DeliveryRollup.objects.create(
            minute=now - age, application_id=app_id, channel="SMS", shard=0, sent=1
        )
        ErrorRollup.objects.create(
            minute=now - age, application_id=app_id, channel="SMS", error_code="x", shard=0
        )
    settings.ROLLUP_RETENTION_DAYS = 30

    assert purge_rollups() == 2

    assert DeliveryRollup.objects.count() == ErrorRollup.objects.count() == 1


def test_the_purge_runs_daily_from_beat(settings):
    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if "purge_rollups" in e["task"]]
    assert entry["schedule"] == 86400.0


# --- Concurrent upserts ------------------------------------------------------------------------


def _worker_connection():
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
        dbname=db["NAME"],
    )  # fmt: skip


def _upsert(conn, *, shard: int, minute, app_id) -> None:
    """One batch's upsert as a worker process of slot `shard` runs it, in its open
    transaction."""
    rows = [
        {"application_id": str(app_id), "channel": "SMS", "sent": 1, "successful": 1,
         "failed_permanent": 0, "failed_temporary": 0, "latency": [1] * rollups.BUCKETS}
    ]  # fmt: skip
    conn.execute(
        rollups._delivery_upsert_sql(),
        {"minute": minute, "shard": shard, "rows": json.dumps(rows)},
    )


@pytest.mark.django_db(transaction=True)
def test_two_workers_of_different_slots_do_not_wait_for_each_other():
    minute = timezone.now().replace(second=0, microsecond=0)
    app_id = uuid.uuid4()
    first, second = _worker_connection(), _worker_connection()
    try:
        second.execute("SET lock_timeout = '1s'")
        _upsert(first, shard=1, minute=minute, app_id=app_id)  # its batch not yet committed
        _upsert(second, shard=2, minute=minute, app_id=app_id)  # not blocked
        second.commit()
        # The same slot waits on the first one's row lock: what the shards avoid.
        with pytest.raises(psycopg.errors.LockNotAvailable):
            _upsert(second, shard=1, minute=minute, app_id=app_id)
        second.rollback()
        first.commit()
        _upsert(second, shard=1, minute=minute, app_id=app_id)
        second.commit()
    finally:
        first.close()
        second.close()
    rows = {r.shard: r for r in DeliveryRollup.objects.filter(minute=minute)}
    assert (rows[1].sent, rows[2].sent) == (2, 1)
    assert rows[1].latency == [2] * rollups.BUCKETS
    DeliveryRollup.objects.all().delete()


# --- The console page --------------------------------------------------------------------------


def seed_console(application) -> Campaign:
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    histogram = [0] * rollups.BUCKETS
    histogram[rollups.latency_bucket(40.0)] = 900
    histogram[rollups.latency_bucket(900.0)] = 100
    for shard in range(3):
        for ago in (0, 5, 59, 120, 23 * 60):
            DeliveryRollup.objects.create(
                minute=minute - timedelta(minutes=ago), application=application,
                channel="iOSPush", shard=shard, sent=1000, successful=950,
                failed_permanent=50, failed_temporary=7, latency=histogram,
            )  # fmt: skip
    # Older than 24 hours: not counted.
    DeliveryRollup.objects.create(
        minute=minute - timedelta(hours=25), application=application, channel="iOSPush",
        shard=0, sent=99999, successful=99999, latency=histogram,
    )  # fmt: skip
    ErrorRollup.objects.create(
        minute=minute, application=application, channel="iOSPush",
        error_code="BadDeviceToken", shard=0, count=123,
    )  # fmt: skip
    campaign = Campaign.objects.create(
        application=application, name="Winter sale", status="running", title="t", body="b"
    )
    CampaignRun.objects.create(
        campaign=campaign, number=1, trigger="execute", audience_estimate=2000, targeted=1000,
        pending=400, successful=300, failed=100, received=120, converted=80,
    )  # fmt: skip
    return campaign


def test_the_console_shows_the_rollups_and_campaigns(admin_client, app):
    campaign = seed_console(app.application)

    response = admin_client.get("/admin/")

    assert response.status_code == 200
    page = response.content.decode()
    hour, day = response.context["channels"][0].hour, response.context["channels"][0].day
    # Last hour: minutes 0, 5 and 59 ago, three slots each.
    assert (hour.sent, hour.successful, hour.failed_permanent, hour.failed_temporary) == (
        9000, 8550, 450, 63,
    )  # fmt: skip
    assert day.sent == 15000  # and 120 min and 23 h ago; not 25 h ago
    assert "95.0 %" in page and "15,000" in page and "9,000" in page
    assert 600 < day.p95_ms <= 1000  # in the bucket of the slowest tenth
    assert "BadDeviceToken" in page and "error_code=BadDeviceToken" in page
    assert "<svg" in page and "<script" not in page.split('id="console"')[1].split("</svg>")[0]
    assert "Winter sale" in page
    # Funnel: delivered = successful + received + converted; received includes converted.
    [figures] = response.context["campaigns"]
    assert (figures.targeted, figures.delivered, figures.received, figures.converted) == (
        1000, 500, 200, 80,
    )  # fmt: skip
    assert figures.conversion_rate == pytest.approx(0.16)
    assert figures.fanout_progress == 0.5 and figures.send_progress == 0.6
    assert f"campaign_id={campaign.pk}" in page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    assert "Messages" in page  # the app list stays below the console
    assert 'href="/api/v1/docs/"' in page and "Automata-Signal" in page


def test_the_day_adds_the_current_minute_to_its_closed_minutes_read_once(admin_client, app):
    seed_console(app.application)
    admin_client.get("/admin/")
    now = timezone.now()
    DeliveryRollup.objects.create(
        minute=now.replace(second=0, microsecond=0), application=app.application,
        channel="iOSPush", shard=9, sent=5, successful=5,
    )  # fmt: skip

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/")

    [figures] = response.context["channels"]
    if timezone.now().replace(second=0, microsecond=0) == now.replace(second=0, microsecond=0):
        # The same minute: the closed minutes came from the cache, the current one is live.
        assert sum("messaging_deliveryrollup" in q["sql"] for q in queries.captured_queries) == 1
    assert (figures.hour.sent, figures.day.sent) == (9005, 15005)


def test_the_console_reads_no_messages_and_few_queries(
    admin_client, app, django_assert_max_num_queries
):
    seed_console(app.application)

    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(10):
        response = admin_client.get("/admin/")

    assert response.status_code == 200
    touching = [q["sql"] for q in queries.captured_queries if MESSAGE_TABLE.search(q["sql"])]
    assert touching == []
    assert any("messaging_deliveryrollup" in q["sql"] for q in queries.captured_queries)


def test_the_console_is_for_staff_only(app):
    response = Client().get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_view_site_leads_to_the_api_docs(admin_client):
    assert admin_client.get("/api/v1/docs/").status_code == 200


# --- The message log -----------------------------------------------------------------------------


class SmallCap(EstimatedCountPaginator):
    COUNT_UP_TO = 10


def test_the_paginator_takes_the_planners_estimate_of_an_unfiltered_table(fake_app, providers):  # noqa: F811
    send(fake_app, [subscription_create(fake_app, token=ios_token()) for _ in range(30)])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_class SET reltuples = 123456 WHERE oid = 'messaging_message'::regclass"
        )

    with CaptureQueriesContext(connection) as queries:
        count = SmallCap(Message.objects.order_by("-pk"), 100).count

    assert count == 123456
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    # Filtered: counted up to the cap, then the planner's estimate (never less than counted).
    assert SmallCap(Message.objects.filter(channel="AndroidPush").order_by("-pk"), 100).count == 0
    with CaptureQueriesContext(connection) as queries:
        assert SmallCap(Message.objects.filter(channel="iOSPush").order_by("-pk"), 100).count >= 11
    sql = [q["sql"] for q in queries.captured_queries]
    assert any("LIMIT 11" in q for q in sql) and any(q.startswith("EXPLAIN") for q in sql)
    # Below the cap the count is exact.
    ios = Message.objects.filter(channel="iOSPush").order_by("-pk")
    assert EstimatedCountPaginator(ios, 100).count == 30
    # A count that takes too long (here: 10 ms a row) gives way to the estimate.
    slow = ios.extra(where=["pg_sleep(0.01) IS NOT NULL"])
    with CaptureQueriesContext(connection) as queries:
        estimated = SmallCap(slow, 100).count
    assert estimated >= 0 and any(q["sql"].startswith("EXPLAIN") for q in queries.captured_queries)
    assert SmallCap.COUNT_TIMEOUT_MS < 30 * 10
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"  # put back for the rest of the transaction
    assert EstimatedCountPaginator(slow.filter(channel="AndroidPush"), 100).count == 0


def test_the_message_log_filters_without_counting_the_table(admin_client, fake_app, providers):  # noqa: F811
    messages = send(fake_app, [subscription_create(fake_app, token=ios_token("0413"))])
    delivery.deliver_batch(ids(messages))
    failed = Message.objects.get(pk=messages[0].pk)
    since = (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)
    url = console.message_log_url(
        channel="iOSPush", status="failed", error_code=failed.error_code, since=since
    )

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)

    assert response.status_code == 200
    assert str(failed.pk) in response.content.decode()
    sql = [q["sql"] for q in queries.captured_queries]
    counts = [q for q in sql if "COUNT(" in q.upper()]
    assert counts and all("LIMIT" in q for q in counts)
    # The list is read with parallel plans off (in the page's transaction).
    serial = sql.index("SET LOCAL max_parallel_workers_per_gather = 0")
    listed = next(i for i, q in enumerate(sql) if q.startswith('SELECT "messaging_message"."id"'))
    assert serial < listed
    # Unfiltered, and by campaign and by a range given in the URL.
    assert admin_client.get("/admin/messaging/message/").status_code == 200
    other = console.message_log_url(campaign_id=uuid.uuid4(), since=since)
    response = admin_client.get(other)
    assert response.status_code == 200 and str(failed.pk) not in response.content.decode()


def test_the_event_log_pages_without_counting_the_table(admin_client, fake_app, providers):  # noqa: F811
    messages = send(fake_app, [subscription_create(fake_app, token=ios_token())])
    delivery.deliver_batch(ids(messages))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_class SET reltuples = 98765432"
            " WHERE oid = 'messaging_messageevent'::regclass"
        )

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/messaging/messageevent/")

    assert response.status_code == 200
    assert "98765432" in response.content.decode().replace(",", "")
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    since = (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)
    response = admin_client.get(
        "/admin/messaging/messageevent/", {"type__exact": "attempt", "at__gte": str(since)}
    )
    assert response.status_code == 200 and "attempt" in response.content.decode()
