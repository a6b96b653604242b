"""Retention purge over a large message table (messaging.retention): seeds N expired messages
with events (COPY) into a throwaway database behind a running stack, then

  (c) runs the campaign bench (push, --campaign-n subscriptions) without and with the purge
      working concurrently in a process of its own, interleaved A B B A (--rounds pairs),
      for the campaign's msg/s either way;
  (d) copies the messages and events into tables partitioned by month (PARTITION BY RANGE
      (created_at)) and times DETACH PARTITION + DROP of one month against the batched
      DELETE of another month's rows;
  (b) purges what is left, batch after batch without pauses: rows/s, batch (transaction)
      times, total time, WAL bytes, table and index sizes and dead rows after.

    python bench/retention.py [--n 10000000] [--campaign-n 100000] [--rounds 2] \\
        [--batch-size 2000] [--pause 0.3] [--purge-seconds 0] [--skip-partitions]

Run by hand only (10M messages take minutes to seed). Prints progress, and as its last line
one JSON object. WAL figures are the cluster's (pg_current_wal_lsn): other databases' writes
on the same server count too. `--purge-worker` is the concurrent purge's own entry point.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BenchConfig,
    add_stack_arguments,
    base_env,
    config_from,
    emit,
    machine,
    percentile,
    rounded,
    setup_django,
)

RETENTION_DAYS = 30
# The seeded messages were made between AGE_MAX and AGE_MIN days ago: all past retention.
AGE_MIN, AGE_MAX = 31, 120
SUBSCRIPTIONS = 100_000


# --- Figures from PostgreSQL --------------------------------------------------------------------


def wal_lsn() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        return cursor.fetchone()[0]


def wal_bytes_since(lsn: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn])
        return int(cursor.fetchone()[0])


def table_figures(*tables: str) -> dict:
    """Per table: heap and index sizes (MB), live and dead rows (the statistics' estimate)."""
    from django.db import connection

    figures = {}
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(
                """
                SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid),
                       s.n_live_tup, s.n_dead_tup
                FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
                WHERE c.relname = %s
                """,
                [table],
            )
            heap, indexes, live, dead = cursor.fetchone()
            figures[table] = {
                "heap_mb": round(heap / 1e6, 1),
                "indexes_mb": round(indexes / 1e6, 1),
                "live_rows": live,
                "dead_rows": dead,
            }
    return figures


def load() -> str:
    """The 1, 5 and 15 minute load averages (`uptime`'s)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- Seeding ------------------------------------------------------------------------------------


def seed(n: int, events_per_message: int) -> tuple[object, dict]:
    """An application keeping RETENTION_DAYS days, SUBSCRIPTIONS subscriptions and n
    messages made AGE_MAX..AGE_MIN days ago (bench/console.py's seed_messages), each with
    `events_per_message` events (an attempt and a status), written in the database."""
    from django.db import connection

    from accounts.services import application_create
    from bench.console import seed_messages
    from bench.seed import seed_subscriptions
    from messaging.models import Subscription

    application = application_create(name="retention-bench")
    application.retention_days = RETENTION_DAYS
    application.save(update_fields=["retention_days"])
    started = time.perf_counter()
    print(f"seeding {SUBSCRIPTIONS:,} subscriptions", flush=True)
    seed_subscriptions(application, min(SUBSCRIPTIONS, max(n, 2)))
    subscriptions = list(Subscription.objects.values_list("id", "type"))
    random.shuffle(subscriptions)
    print(f"seeding {n:,} messages", flush=True)
    until = datetime.now(UTC) - timedelta(days=AGE_MIN)
    message_seconds = seed_messages(
        application, subscriptions, n, days=AGE_MAX - AGE_MIN, until=until
    )
    event_started = time.perf_counter()
    kinds = [("attempt", ""), ("status", "successful")][:events_per_message]
    with connection.cursor() as cursor:
        for kind, status in kinds:
            print(f"seeding {n:,} {kind} events", flush=True)
            cursor.execute(
                "INSERT INTO messaging_messageevent (message_id, type, status, at, details) "
                "SELECT id, %s, %s, created_at, '{}' FROM messaging_message "
                "WHERE application_id = %s",
                [kind, status, application.pk],
            )
        cursor.execute("VACUUM (ANALYZE) messaging_message")
        cursor.execute("VACUUM (ANALYZE) messaging_messageevent")
        cursor.execute("CHECKPOINT")
    return application, {
        "messages": n,
        "events": n * len(kinds),
        "message_seconds": round(message_seconds, 1),
        "event_seconds": round(time.perf_counter() - event_started, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- The concurrent purge -----------------------------------------------------------------------


def purge_worker(batch_size: int, pause: float) -> None:
    """Runs the purge (messaging.retention.expired_purge, as the beat task does) over and over
    until SIGTERM; a JSON line of its totals after each run."""
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    from messaging import retention

    deleted = batches = 0
    started = time.monotonic()
    while not stop["now"]:
        run = retention.expired_purge(
            batch_size=batch_size, budget_seconds=2.0, pause_seconds=pause
        )
        deleted += sum(p.messages for p in run.purged.values())
        batches += run.batches
        print(
            json.dumps(
                {"deleted": deleted, "batches": batches, "seconds": time.monotonic() - started}
            ),
            flush=True,
        )
        if run.finished and not run.purged:
            time.sleep(0.5)


def start_purge_worker(config: BenchConfig, batch_size: int, pause: float, log: Path):
    env = {**os.environ, **base_env(config)}
    command = [
        sys.executable, __file__, "--purge-worker", "--db-name", config.db_name,
        "--redis-db", str(config.redis_db), "--batch-size", str(batch_size),
        "--pause", str(pause),
    ]  # fmt: skip
    handle = log.open("w")
    return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT), handle


def stop_purge_worker(process, handle, log: Path) -> dict:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    handle.close()
    last = {}
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            last = json.loads(line)
    return last


def ab_rounds(stack, config, args) -> dict:
    """The campaign without (A) and with (B) the purge running, in the order A B B A per
    pair of rounds."""
    from bench.campaign import run_ours

    order = (["A", "B", "B", "A"] * args.rounds)[: 2 * args.rounds]
    timeout = max(120.0, args.campaign_n / 100)
    rounds = []
    for number, kind in enumerate(order, start=1):
        print(f"round {number} ({kind}), load {load()}", flush=True)
        worker = None
        log = stack.log_dir / f"purge-{number}.log"
        if kind == "B":
            worker = start_purge_worker(config, args.batch_size, args.pause, log)
        try:
            result = run_ours(stack, args.campaign_n, 100 + number, timeout, reset=False)
        finally:
            purge = stop_purge_worker(*worker, log) if worker else {}
        rounds.append(
            {
                "round": number,
                "purge": kind == "B",
                "messages_per_second": result["messages_per_second"],
                "ok": result["ok"],
                "elapsed_s": result["elapsed_s"],
                "p95_created_to_successful_ms": result.get("p95_created_to_successful_ms"),
                "purged_messages": purge.get("deleted"),
                "purge_seconds": rounded(purge.get("seconds")),
                "cpu_share_other": result["cpu_share"].get("other"),
                "load": load(),
            }
        )
        print(f"  -> {rounds[-1]}", flush=True)
    without = [r["messages_per_second"] for r in rounds if not r["purge"]]
    with_ = [r["messages_per_second"] for r in rounds if r["purge"]]
    a, b = statistics.median(without), statistics.median(with_)
    purged = [r for r in rounds if r["purge"] and r["purge_seconds"]]
    return {
        "campaign_n": args.campaign_n,
        "batch_size": args.batch_size,
        "pause_s": args.pause,
        "without_purge_msg_s_median": round(a),
        "with_purge_msg_s_median": round(b),
        "slowdown_pct": round((a - b) / a * 100, 1),
        "purge_rows_per_s_concurrent": round(
            sum(r["purged_messages"] for r in purged) / sum(r["purge_seconds"] for r in purged)
        )
        if purged
        else None,
        "rounds": rounds,
    }


# --- The purge alone ----------------------------------------------------------------------------


def purge_alone(application, batch_size: int, limit_seconds: float) -> dict:
    """What is left of the application's expired messages, purged batch after batch with no
    pause (messaging.retention.messages_batch_purge, the purge's own transaction), timing
    each batch; stops after `limit_seconds` if that is not 0."""
    from django.utils import timezone

    from messaging import retention

    before = table_figures("messaging_message", "messaging_messageevent")
    lsn = wal_lsn()
    now = timezone.now()
    cutoff = retention.cutoff_of(application, now)
    batch_ms, messages, events = [], 0, 0
    after = None
    started = time.monotonic()
    while True:
        t = time.perf_counter()
        done, after = retention.messages_batch_purge(
            application=application, cutoff=cutoff, now=now, limit=batch_size, after=after
        )
        batch_ms.append((time.perf_counter() - t) * 1000)
        messages += done.messages
        events += done.events
        if len(batch_ms) % 250 == 0:
            elapsed = time.monotonic() - started
            print(f"  purged {messages:,} in {elapsed:.0f} s, load {load()}", flush=True)
        if done.messages < batch_size:
            break
        if limit_seconds and time.monotonic() - started >= limit_seconds:
            break
    seconds = time.monotonic() - started
    wal = wal_bytes_since(lsn)
    after = table_figures("messaging_message", "messaging_messageevent")
    return {
        "batch_size": batch_size,
        "messages": messages,
        "events": events,
        "seconds": round(seconds, 1),
        "messages_per_s": round(messages / seconds),
        "rows_per_s": round((messages + events) / seconds),
        "batch_ms_p50": rounded(percentile(batch_ms, 0.5)),
        "batch_ms_p95": rounded(percentile(batch_ms, 0.95)),
        "batch_ms_max": rounded(max(batch_ms)),
        "wal_mb": round(wal / 1e6, 1),
        "wal_bytes_per_message": round(wal / max(messages, 1)),
        "tables_before": before,
        "tables_after": after,
        "load": load(),
    }


# --- Partitions ---------------------------------------------------------------------------------


def partitions(application, batch_size: int) -> dict:
    """Copies the messages and their events into monthly partitioned tables (events carry
    their message's created_at, the partition key), then times DETACH + DROP of the fullest
    month against the batched DELETE (ids, events by message id, messages) of the next
    fullest."""
    from django.db import connection

    figures = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('part_message') IS NOT NULL")
        if cursor.fetchone()[0]:  # --reuse: the copy of an earlier run is there
            return partitions_measured(application, batch_size, figures)
        cursor.execute(
            "SELECT date_trunc('month', min(created_at)), max(created_at) FROM messaging_message"
        )
        first, last = cursor.fetchone()
        months = []
        month = first
        while month <= last:
            nxt = (month + timedelta(days=32)).replace(day=1)
            months.append((month, nxt))
            month = nxt
        started = time.perf_counter()
        cursor.execute("DROP TABLE IF EXISTS part_event, part_message")
        cursor.execute(
            "CREATE TABLE part_message (LIKE messaging_message INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (created_at)"
        )
        cursor.execute(
            "CREATE TABLE part_event (LIKE messaging_messageevent INCLUDING DEFAULTS, "
            "message_created_at timestamptz NOT NULL) PARTITION BY RANGE (message_created_at)"
        )
        for start, end in months:
            suffix = start.strftime("%Y%m")
            for table in ("part_message", "part_event"):
                # DDL takes no parameters; the bounds are our own timestamps.
                cursor.execute(
                    f"CREATE TABLE {table}_{suffix} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
        cursor.execute(
            "INSERT INTO part_message SELECT * FROM messaging_message ORDER BY created_at"
        )
        cursor.execute(
            "INSERT INTO part_event SELECT e.*, m.created_at FROM messaging_messageevent e "
            "JOIN messaging_message m ON m.id = e.message_id"
        )
        # The keys a partitioned messages table would need: the partition key in the primary
        # key, the event's foreign key to (message id, created_at), the purge's indexes.
        cursor.execute("ALTER TABLE part_message ADD PRIMARY KEY (id, created_at)")
        cursor.execute("CREATE INDEX ON part_message (application_id, created_at DESC)")
        cursor.execute("CREATE INDEX ON part_event (message_id, at)")
        cursor.execute(
            "ALTER TABLE part_event ADD FOREIGN KEY (message_id, message_created_at) "
            "REFERENCES part_message (id, created_at) ON DELETE CASCADE"
        )
        cursor.execute("VACUUM (ANALYZE) part_message")
        cursor.execute("VACUUM (ANALYZE) part_event")
        figures["copy_seconds"] = round(time.perf_counter() - started, 1)
    return partitions_measured(application, batch_size, figures)


def partitions_measured(application, batch_size: int, figures: dict) -> dict:
    """DETACH + DROP of the fullest month of the partitioned copy, and the batched DELETE of
    the next fullest; then the copy is dropped."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'part_message'::regclass"
        )
        sizes = []
        for name, bound in cursor.fetchall():
            cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608
            start = datetime.fromisoformat(bound.split("'")[1])
            sizes.append((cursor.fetchone()[0], name.rsplit("_", 1)[1], start))
        sizes.sort(reverse=True)
        (dropped, drop_suffix, _), (deleted_n, delete_suffix, delete_start) = sizes[:2]
        figures["months"] = {suffix: count for count, suffix, _ in sizes}

        lsn = wal_lsn()
        started = time.perf_counter()
        # The detached events keep their foreign key: they go before their messages detach.
        cursor.execute(f"ALTER TABLE part_event DETACH PARTITION part_event_{drop_suffix}")
        cursor.execute(f"DROP TABLE part_event_{drop_suffix}")
        cursor.execute(f"ALTER TABLE part_message DETACH PARTITION part_message_{drop_suffix}")
        cursor.execute(f"DROP TABLE part_message_{drop_suffix}")
        figures["detach_drop"] = {
            "month": drop_suffix,
            "messages": dropped,
            "seconds": round(time.perf_counter() - started, 3),
            "wal_mb": round(wal_bytes_since(lsn) / 1e6, 2),
        }
        print(f"  detach + drop: {figures['detach_drop']}", flush=True)

    delete_end = (delete_start + timedelta(days=32)).replace(day=1)
    lsn = wal_lsn()
    started = time.perf_counter()
    deleted = 0
    batch_ms = []
    after = delete_start
    while True:
        t = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            # As the purge picks them: one application's oldest, by its index.
            cursor.execute(
                "SELECT id, created_at FROM part_message WHERE application_id = %s "
                "AND created_at >= %s AND created_at < %s ORDER BY created_at LIMIT %s "
                "FOR UPDATE SKIP LOCKED",
                [application.pk, after, delete_end, batch_size],
            )
            rows = cursor.fetchall()
            ids = [row[0] for row in rows]
            after = rows[-1][1] if rows else after
            if ids:
                cursor.execute(
                    "DELETE FROM part_event WHERE message_id = ANY(%s) "
                    "AND message_created_at >= %s AND message_created_at < %s",
                    [ids, delete_start, delete_end],
                )
                cursor.execute(
                    "DELETE FROM part_message WHERE id = ANY(%s) AND created_at >= %s "
                    "AND created_at < %s",
                    [ids, delete_start, delete_end],
                )
        batch_ms.append((time.perf_counter() - t) * 1000)
        deleted += len(ids)
        if len(ids) < batch_size:
            break
    seconds = time.perf_counter() - started
    figures["batched_delete"] = {
        "month": delete_suffix,
        "messages": deleted,
        "seconds": round(seconds, 1),
        "messages_per_s": round(deleted / seconds),
        "batch_ms_p50": rounded(percentile(batch_ms, 0.5)),
        "batch_ms_p95": rounded(percentile(batch_ms, 0.95)),
        "wal_mb": round(wal_bytes_since(lsn) / 1e6, 1),
        "load": load(),
    }
    print(f"  batched delete: {figures['batched_delete']}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS part_event, part_message")
    return figures


# --- Main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="expired messages (10M)")
    parser.add_argument("--events-per-message", type=int, default=2, choices=[0, 1, 2])
    parser.add_argument("--campaign-n", type=int, default=100_000, help="subscriptions (100k)")
    parser.add_argument("--rounds", type=int, default=2, help="A and B rounds each (2)")
    parser.add_argument("--batch-size", type=int, default=2000, help="messages per batch")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between batches")
    parser.add_argument(
        "--purge-seconds", type=float, default=0, help="stop the lone purge after (0: all)"
    )
    parser.add_argument(
        "--tune", type=int, default=1, help="A/B again with 3x the pause if over 10 %% (1)"
    )
    parser.add_argument("--skip-partitions", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="no stack, no seeding: (d) and (b) on the database an interrupted run left",
    )
    parser.add_argument("--skip-ab", action="store_true")
    parser.add_argument("--purge-worker", action="store_true", help=argparse.SUPPRESS)
    add_stack_arguments(parser)
    parser.set_defaults(db_name="signal_bench_retention", redis_db=3)
    args = parser.parse_args()
    config = config_from(args)
    setup_django(config)
    if args.purge_worker:
        purge_worker(args.batch_size, args.pause)
        return 0

    from bench.stack import running_stack_of

    figures = {"benchmark": "retention", "n": args.n, "load_start": load()}
    if args.reuse:
        from accounts.models import Application

        application = Application.objects.get(name="retention-bench")
        if not args.skip_partitions:
            figures["partitions"] = partitions(application, args.batch_size)
        print("purging the rest alone", flush=True)
        figures["purge"] = purge_alone(application, args.batch_size, args.purge_seconds)
        figures.update(ok=True, load_end=load(), machine=machine())
        emit(figures)
        return 0
    with running_stack_of(config, args) as stack:
        application, figures["seed"] = seed(args.n, args.events_per_message)
        print(f"seeded: {figures['seed']}, load {load()}", flush=True)
        if not args.skip_ab:
            # Paced more each time the campaign lost more than 10 % (up to --tune times).
            tried = []
            for attempt in range(args.tune + 1):
                result = ab_rounds(stack, config, args)
                tried.append(result)
                print(f"A/B: {json.dumps(result)[:400]}", flush=True)
                if result["slowdown_pct"] <= 10 or attempt == args.tune:
                    break
                args.pause = round(args.pause * 3, 3)
            figures["campaign_ab"] = tried[-1]
            figures["campaign_ab_tried"] = tried[:-1]
        if not args.skip_partitions:
            figures["partitions"] = partitions(application, args.batch_size)
        print("purging the rest alone", flush=True)
        figures["purge"] = purge_alone(application, args.batch_size, args.purge_seconds)
        print(f"purge: {json.dumps(figures['purge'])[:400]}", flush=True)
    ab = figures.get("campaign_ab")
    figures["ok"] = bool(ab is None or ab["slowdown_pct"] <= 10)
    figures["load_end"] = load()
    figures["machine"] = machine()
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
