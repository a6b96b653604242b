"""A user's export and erasure over a large message table: seeds one user with N messages on
two subscriptions (an iOS device and an in-app inbox; one event per message, an inbox item per
inbox message) among the messages of other users (COPY), into a throwaway database; then
streams the user's export (messaging.selectors.export) and erases the user
(messaging.services.erasure.user_erase), in-process.

    python bench/erasure.py [--n 100000] [--others 100000] [--db-name signal_bench_erasure]

Run by hand. The last line is one JSON object: the seeding time, the export's seconds, bytes
and peak Python memory (tracemalloc: what the process held at once while writing it), and the
erasure's seconds, statements and rows deleted per kind.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchConfig, emit, machine, setup_django  # noqa: E402

CHUNK = 50_000
OTHER_SUBSCRIPTIONS = 1_000


def seed_messages(application, subscriptions: list[tuple], n: int) -> None:
    """n delivered messages to `subscriptions` ((id, type) pairs, in turn), with COPY."""
    from core.bulk import copy_rows
    from messaging.ids import uuid7
    from messaging.models import Message

    columns = (
        "id", "application_id", "subscription_id", "channel", "title", "body", "data", "parts",
        "priority", "collapse_id", "status", "attempts", "error_code", "error_message",
        "provider_id", "created_at", "sent_at",
    )  # fmt: skip
    start_ms = int((datetime.now(UTC) - timedelta(days=30)).timestamp() * 1000)
    for first in range(0, n, CHUNK):
        rows = []
        for index in range(first, min(first + CHUNK, n)):
            ms = start_ms + index
            created = datetime.fromtimestamp(ms / 1000, UTC)
            subscription_id, channel = subscriptions[index % len(subscriptions)]
            rows.append(
                (
                    uuid7(ms), application.pk, subscription_id, channel, "Hello", "World",
                    {"n": str(index)}, {}, "normal", "", "successful", 1, "", "",
                    f"p-{index}", created, created,
                )
            )  # fmt: skip
        copy_rows(Message, columns, rows)


def seed_events_and_items() -> None:
    """One status event per message; an inbox item per in-app message (in the database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_messageevent (message_id, type, status, at, details)"
            " SELECT id, 'status', status, created_at, '{}' FROM messaging_message"
        )
        cursor.execute(
            "INSERT INTO messaging_inboxitem (message_id, application_id, subscription_id,"
            " title, body, data, in_app, created_at)"
            " SELECT id, application_id, subscription_id, title, body, data, '{}', created_at"
            " FROM messaging_message WHERE channel = 'InAppMessage'"
        )
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="the user's messages (100,000)")
    parser.add_argument("--others", type=int, default=100_000, help="other users' messages")
    parser.add_argument("--db-name", default="signal_bench_erasure", help="dropped first")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database (11)")
    args = parser.parse_args()
    config = BenchConfig(db_name=args.db_name, redis_db=args.redis_db)

    from bench.stack import fresh_database

    fresh_database(config)
    setup_django(config)

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.services import application_create
    from bench.seed import seed_subscriptions
    from messaging.models import Subscription, User
    from messaging.selectors.export import user_export_chunks
    from messaging.services.erasure import user_erase
    from messaging.services.subscriptions import subscription_register

    application = application_create(name="erasure-bench")
    seed_subscriptions(application, OTHER_SUBSCRIPTIONS)
    others = list(Subscription.objects.values_list("id", "type"))
    mine = [
        subscription_register(
            application=application,
            actor="bench",
            type=kind,
            token=token,
            external_user_id="bench-user",
        )[0]
        for kind, token in (("iOSPush", "be" * 32), ("InAppMessage", "bench-user-phone"))
    ]
    started = time.perf_counter()
    print(f"seeding {args.n:,} + {args.others:,} messages", flush=True)
    seed_messages(application, [(s.pk, s.type) for s in mine], args.n)
    seed_messages(application, others, args.others)
    seed_events_and_items()
    seed_seconds = time.perf_counter() - started
    user = User.objects.get(external_user_id="bench-user")

    tracemalloc.start()
    started = time.perf_counter()
    size = sum(len(chunk.encode()) for chunk in user_export_chunks(user=user))
    export_seconds = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"export: {size:,} bytes in {export_seconds:.2f} s", flush=True)

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        counts = user_erase(user=user, actor="bench")
        erase_seconds = time.perf_counter() - started
    print(f"erase: {counts} in {erase_seconds:.2f} s", flush=True)
    emit(
        {
            "bench": "erasure",
            "n": args.n,
            "others": args.others,
            "seed_seconds": round(seed_seconds, 1),
            "export_seconds": round(export_seconds, 2),
            "export_bytes": size,
            "export_peak_python_mb": round(peak / 1e6, 1),
            "erase_seconds": round(erase_seconds, 2),
            "erase_statements": len(queries.captured_queries),
            "erased": counts,
            "ok": counts["messages"] == args.n,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
