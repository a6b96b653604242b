"""The operators' console over a large message table: seeds N messages (COPY) and 30 days of
delivery rollups into a throwaway database, then times GET /admin/ (the console) and the
message log (unfiltered, and filtered by channel, status and the last 24 hours), in-process
through Django's test client as a logged-in superuser.

    python bench/console.py [--n 10000000] [--repeat 20] [--db-name signal_bench_console]

Run by hand only (10M messages take minutes to seed). Prints progress, and as its last line
one JSON object: the seeding times and, per page, p50/p95/max milliseconds and queries.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchConfig, emit, machine, percentile, rounded, setup_django  # noqa: E402

CHUNK = 100_000
SUBSCRIPTIONS = 100_000
DAYS = 30
SHARDS = 4  # writer slots per minute and channel, as four worker processes leave them
CHANNELS = ("iOSPush", "AndroidPush")
# (status, share) of the seeded messages: statuses are where messages end up.
STATUSES = (
    ("successful", 0.90),
    ("failed", 0.05),
    ("received", 0.03),
    ("converted", 0.01),
    ("pending", 0.01),
)
ERROR_CODES = ("BadDeviceToken", "Unregistered", "token_invalid", "UNAVAILABLE", "TooManyRequests")


def _status_table() -> list[str]:
    table = []
    for status, share in STATUSES:
        table += [status] * round(share * 100)
    return table


def seed_messages(
    application, subscriptions: list, n: int, *, days: int = DAYS, until: datetime | None = None
) -> float:
    """n messages of `application` to its subscriptions, created over the `days` days before
    `until` (now), with core.bulk.copy_rows (COPY) in chunks; returns the seconds taken."""
    from core.bulk import copy_rows
    from messaging.ids import uuid7
    from messaging.models import Message

    columns = (
        "id", "application_id", "subscription_id", "channel", "title", "body", "data", "parts",
        "priority", "collapse_id", "status", "attempts", "error_code", "error_message",
        "provider_id", "created_at", "sent_at", "campaign_id",
    )  # fmt: skip
    statuses = _status_table()
    now = until or datetime.now(UTC)
    start_ms = int((now - timedelta(days=days)).timestamp() * 1000)
    step_ms = days * 86_400_000 / max(n, 1)
    campaign_id = uuid.uuid4()
    empty: dict = {}
    started = time.perf_counter()
    for first in range(0, n, CHUNK):
        rows = []
        for index in range(first, min(first + CHUNK, n)):
            ms = int(start_ms + index * step_ms)
            created = datetime.fromtimestamp(ms / 1000, UTC)
            subscription_id, channel = subscriptions[index % len(subscriptions)]
            status = statuses[index % len(statuses)]
            failed = status == "failed"
            rows.append(
                (
                    uuid7(ms), application.pk, subscription_id, channel, "Hello", "World",
                    empty, empty, "normal", "", status, 0 if status == "pending" else 1,
                    ERROR_CODES[index % len(ERROR_CODES)] if failed else "",
                    "bench" if failed else "", "" if failed else f"p-{index}", created,
                    None if status == "pending" or failed else created,
                    campaign_id if index % 10 == 0 else None,
                )
            )  # fmt: skip
        copy_rows(Message, columns, rows)
        print(f"  messages: {min(first + CHUNK, n):,}/{n:,}", flush=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_message")
    return time.perf_counter() - started


def seed_rollups(application, days: int = DAYS) -> float:
    """`days` days of rollup rows, per minute, channel and SHARDS slots (what the workers would
    have left), and a few error codes per minute: generated in the database."""
    from django.db import connection

    from messaging.delivery.rollups import BUCKETS

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
INSERT INTO messaging_deliveryrollup
  (minute, application_id, channel, shard, sent, successful, failed_permanent,
   failed_temporary, latency)
SELECT m, %(app)s, c, s, 250, 235, 10, 5,
       ARRAY(SELECT CASE WHEN b BETWEEN 12 AND 20 THEN 25 ELSE 1 END
             FROM generate_series(1, %(buckets)s) AS b)
FROM generate_series(date_trunc('minute', now()) - %(days)s * interval '1 day',
                     date_trunc('minute', now()), interval '1 minute') AS m,
     unnest(%(channels)s::varchar[]) AS c, generate_series(0, %(shards)s - 1) AS s
""",
            {
                "app": application.pk,
                "buckets": BUCKETS,
                "days": days,
                "channels": list(CHANNELS),
                "shards": SHARDS,
            },
        )
        cursor.execute(
            """
INSERT INTO messaging_errorrollup (minute, application_id, channel, error_code, shard, count)
SELECT m, %(app)s, c, e, s, 2
FROM generate_series(date_trunc('minute', now()) - %(days)s * interval '1 day',
                     date_trunc('minute', now()), interval '1 minute') AS m,
     unnest(%(channels)s::varchar[]) AS c, unnest(%(codes)s::varchar[]) AS e,
     generate_series(0, %(shards)s - 1) AS s
""",
            {
                "app": application.pk,
                "days": days,
                "channels": list(CHANNELS),
                "codes": list(ERROR_CODES),
                "shards": SHARDS,
            },
        )
        cursor.execute("ANALYZE messaging_deliveryrollup")
        cursor.execute("ANALYZE messaging_errorrollup")
    return time.perf_counter() - started


def seed_campaign(application) -> None:
    from campaigns.models import Campaign, CampaignRun

    campaign = Campaign.objects.create(
        application=application, name="Bench campaign", status="running", title="t", body="b"
    )
    CampaignRun.objects.create(
        campaign=campaign, number=1, trigger="execute", audience_estimate=100_000,
        targeted=60_000, pending=10_000, successful=40_000, failed=2_000, received=6_000,
        converted=2_000,
    )  # fmt: skip


def time_page(client, url: str, repeat: int) -> dict:
    """GETs `url` once to warm up, then `repeat` times: milliseconds and queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    timings = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {
        "url": url,
        "p50_ms": rounded(percentile(timings, 0.5)),
        "p95_ms": rounded(percentile(timings, 0.95)),
        "max_ms": rounded(max(timings)),
        "queries": len(queries.captured_queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="messages (10,000,000)")
    parser.add_argument("--repeat", type=int, default=20, help="requests per page (20)")
    parser.add_argument("--days", type=int, default=DAYS, help=f"days of rollups ({DAYS})")
    parser.add_argument("--db-name", default="signal_bench_console", help="dropped first")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database (11)")
    args = parser.parse_args()
    config = BenchConfig(db_name=args.db_name, redis_db=args.redis_db)

    from bench.stack import fresh_database

    fresh_database(config)
    setup_django(config)

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from accounts.services import application_create
    from bench.seed import seed_subscriptions
    from messaging.models import Subscription
    from operations.console import message_log_url

    application = application_create(name="console-bench")
    print(f"seeding {SUBSCRIPTIONS:,} subscriptions", flush=True)
    seed_subscriptions(application, min(SUBSCRIPTIONS, max(args.n, 2)))
    subscriptions = list(Subscription.objects.values_list("id", "type"))
    random.shuffle(subscriptions)
    print(f"seeding {args.n:,} messages", flush=True)
    message_seconds = seed_messages(application, subscriptions, args.n)
    rollup_seconds = seed_rollups(application, args.days)
    seed_campaign(application)

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", None)
    client = Client()
    client.force_login(user)
    since = (timezone.now() - timedelta(days=1)).replace(second=0, microsecond=0)
    pages = {
        "console": "/admin/",
        "message_log": message_log_url(),
        "message_log_filtered": message_log_url(channel="iOSPush", status="failed", since=since),
        "message_log_error_code": message_log_url(error_code="Unregistered"),
    }
    figures = {name: time_page(client, url, args.repeat) for name, url in pages.items()}
    for name, page in figures.items():
        print(f"{name}: p50 {page['p50_ms']} ms, p95 {page['p95_ms']} ms", flush=True)
    emit(
        {
            "bench": "console",
            "n": args.n,
            "seed_messages_seconds": round(message_seconds, 1),
            "seed_rollups_seconds": round(rollup_seconds, 1),
            "pages": figures,
            "ok": figures["console"]["p95_ms"] < 300,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
