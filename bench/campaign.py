"""Campaign throughput: one campaign over N subscriptions (half iOS, half Android, or all of
one other channel) through the real pipeline (API, Celery workers, Redis, PostgreSQL, the fake
providers; for InAppMessage, the inbox items written instead), from execute until every
message is terminal; then the same through a naive design (bench/naive.py), for a ratio.

    python bench/campaign.py --n 100000 [--workers 1 --concurrency C --quiet-workers] \
        [--baseline-n 20000 | --no-baseline] [--repeat 3]
        [--channel push|Email|SMS|KakaoTalk|WebPush|InAppMessage]
        [--preferences | --preferences-ab]

--preferences: the recipients' rules at work on every target without leaving one out: each
subscription belongs to a user with preferences (a category entry, a channel entry, quiet
hours that do not cover the run), the application has a frequency cap every target passes,
and the campaign a non-required category. --preferences-ab: the plain and the preferences
bench side by side, `--repeat` rounds of A B B A (A plain, B preferences, fresh data each
run, no baseline), both medians and their ratio.

Prints progress, and as its last line one JSON object: messages_per_second, p50/p95
created-to-successful, worker peak RSS, CPU shares (fakes, workers, web, postgres, redis),
the baseline's rate and the speedup, "ok" (every message successful).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuMeter,
    add_stack_arguments,
    config_from,
    emit,
    http_json,
    machine,
    median_of,
    rounded,
    settings_concurrency,
    setup_django,
)

POLL_SECONDS = 0.1
RSS_EVERY = 1.0
TRUNCATE = (
    "TRUNCATE messaging_messageevent, messaging_message, messaging_subscriptionevent, "
    "messaging_subscription, messaging_user, messaging_frequencywindow, "
    "campaigns_campaignrun, campaigns_campaign CASCADE"
)
# --preferences: the campaign's category, and a cap no target reaches.
CATEGORY = "bench"
FREQUENCY_CAP = {"max": 1000, "per_seconds": 86_400}


def reset_data() -> None:
    """Empties the tables a run fills, so every run starts from the same state."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(TRUNCATE)


def preferences_seed(application) -> dict:
    """Gives every subscription of `application` a user of its own whose preferences each
    rule reads without leaving the target out: the campaign's category on (on its channel
    too), its channel on, quiet hours that end before the run starts (UTC) or begin well
    after it; the application a frequency cap no target reaches, and the category."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from accounts.models import Category
    from core.channels import SPECS
    from messaging.models import User

    started = time.perf_counter()
    now = timezone.now()
    channels = dict.fromkeys(SPECS, True)
    preferences = {
        "channels": channels,
        "categories": {CATEGORY: {"enabled": True, "channels": channels}},
        "quiet_hours": {
            "start": (now + timedelta(hours=6)).strftime("%H:%M"),
            "end": (now + timedelta(hours=7)).strftime("%H:%M"),
            "timezone": "UTC",
        },
    }
    Category.objects.create(
        application=application, key=CATEGORY, name="Bench offers", required=False
    )
    application.frequency_cap = FREQUENCY_CAP
    application.save(update_fields=["frequency_cap"])
    user_table = User._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {user_table} (id, application_id, external_user_id, tags,"  # noqa: S608
            " preferences, created_at)"
            " SELECT gen_random_uuid(), application_id, 'bench-' || id::text, '{}',"
            " %s::jsonb, now() FROM messaging_subscription WHERE application_id = %s",
            [json.dumps(preferences), application.pk],
        )
        users = cursor.rowcount
        cursor.execute(
            f"UPDATE messaging_subscription s SET user_id = u.id FROM {user_table} u"  # noqa: S608
            " WHERE u.application_id = %s AND s.application_id = %s"
            " AND u.external_user_id = 'bench-' || s.id::text",
            [application.pk, application.pk],
        )
        cursor.execute(f"VACUUM (ANALYZE) {user_table}")
    return {"users": users, "preferences_seed_seconds": round(time.perf_counter() - started, 2)}


def settle_audience() -> dict:
    """Before the clock starts: the seeded audience as a long-lived table would be (vacuumed:
    hint bits set, visibility map current) and the seed's WAL checkpointed, so the run pays
    neither the seed's first-read page writes nor a checkpoint the seed's volume triggered."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) messaging_subscription")
        try:
            cursor.execute("CHECKPOINT")  # superuser or pg_checkpoint; skipped otherwise
        except Exception as exc:
            print(f"  (no CHECKPOINT before the run: {exc})", flush=True)
    return {"settle_seconds": round(time.perf_counter() - started, 2)}


def pg_counters() -> tuple[int, ...] | None:
    """PostgreSQL's counters since their reset: WAL bytes, full-page images, and this
    database's blocks read from outside shared buffers (the OS cache or the disk),
    transactions (committed and rolled back) and rows inserted, updated and deleted. A
    backend's counts can lag by up to a second of its work (it reports when idle)."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT wal_bytes, wal_fpi, d.blks_read, d.xact_commit + d.xact_rollback,"
                " d.tup_inserted, d.tup_updated, d.tup_deleted"
                " FROM pg_stat_wal, pg_stat_database d WHERE d.datname = current_database()"
            )
            return tuple(int(value) for value in cursor.fetchone())
    except Exception:
        return None


def worker_statements(stack) -> int:
    """Statements the stack's workers have sent PostgreSQL so far (bench.naive counts them)."""
    folder = stack.log_dir / "statements"
    return sum(int(f.read_text() or 0) for f in folder.iterdir()) if folder.exists() else 0


def redis_commands() -> int | None:
    """Commands the Redis server has processed (the broker's and the cache's round trips;
    server-wide, so other users of the server count too: `cpu_share.other` tells)."""
    import redis
    from django.conf import settings

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        return int(client.info("stats")["total_commands_processed"])
    except Exception:
        return None


def breakdown(stack, n: int, meter, before: dict, after: dict) -> dict:
    """Cost per message: CPU microseconds by process kind, PostgreSQL's statements (the
    workers'), transactions, rows written and WAL bytes, and Redis commands."""
    per_message = {
        f"cpu_us_{name}": round(used / n * 1e6, 1)
        for name, used in meter.used.items()
        if name != "bench_process"
    }
    pg_before, pg_after = before.get("pg"), after.get("pg")
    if pg_before and pg_after:
        delta = [b - a for a, b in zip(pg_before, pg_after, strict=True)]
        per_message |= {
            "pg_wal_bytes": round(delta[0] / n),
            "pg_transactions": round(delta[3] / n, 4),
            "pg_rows_inserted": round(delta[4] / n, 2),
            "pg_rows_updated": round(delta[5] / n, 2),
            "pg_rows_deleted": round(delta[6] / n, 2),
        }
    per_message["pg_statements_by_workers"] = round(
        (after["statements"] - before["statements"]) / n, 4
    )
    if before.get("redis") is not None and after.get("redis") is not None:
        per_message["redis_commands"] = round((after["redis"] - before["redis"]) / n, 4)
    return per_message


def message_figures(**where) -> dict:
    """Counts and created-to-sent percentiles (ms) of the messages matching `where`."""
    from django.db import connection

    column, value = next(iter(where.items()))
    sql = f"""
        SELECT count(*),
               count(*) FILTER (WHERE status = 'successful'),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY ms),
               extract(epoch FROM max(sent_at) - min(created_at))
        FROM (SELECT status, sent_at, created_at,
                     extract(epoch FROM sent_at - created_at) * 1000 AS ms
              FROM messaging_message WHERE {column} = %s) AS m
    """  # noqa: S608 (the column name is ours)
    with connection.cursor() as cursor:
        cursor.execute(sql, [value])
        count, successful, p50, p95, span = cursor.fetchone()
    return {
        "messages": count,
        "successful": successful,
        "p50_created_to_successful_ms": rounded(p50),
        "p95_created_to_successful_ms": rounded(p95),
        "db_span_s": rounded(float(span) if span is not None else None, 2),
    }


def wait_until(done, stack, timeout: float, progress) -> bool:
    """Polls `done()` until true or timeout; samples worker RSS and checks the stack lives."""
    deadline = time.monotonic() + timeout
    next_rss = next_report = 0.0
    while time.monotonic() < deadline:
        if done():
            return True
        now = time.monotonic()
        if now >= next_rss:
            stack.sample_rss()
            stack.check_alive()
            next_rss = now + RSS_EVERY
        if now >= next_report:
            print(progress(), flush=True)
            next_report = now + 5.0
        time.sleep(POLL_SECONDS)
    return False


def inbox_items(application_id) -> int:
    """The inbox items (one per delivered InAppMessage message) of the application."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM messaging_inboxitem WHERE application_id = %s",
            [application_id],
        )
        return cursor.fetchone()[0]


def create_campaign(stack, key: str, channel: str = "push", category: str = "") -> str:
    from bench.seed import KAKAO_TEMPLATE_CODE

    campaign = {
        "name": "bench",
        "title": "Summer sale",
        "body": "Everything 20% off until Sunday. Have a look!",
        "data": {"screen": "sale"},
        "targeting_criteria": {"tags": {"plan": "gold"}},
    }
    if category:
        campaign["category"] = category
    if channel == "InAppMessage":  # written to the inboxes, no provider, no credentials
        campaign["in_app"] = {"action_url": "https://example.com/sale"}
    if channel == "KakaoTalk":
        campaign["kakao"] = {
            "template_code": KAKAO_TEMPLATE_CODE,
            "variables": {"name": "고객", "item": "여름 신상품"},
        }
    status, body = http_json("POST", f"{stack.web_url}/api/v1/campaigns", key, campaign)
    if status != 201:
        raise RuntimeError(f"POST /campaigns answered {status}: {body}")
    return body["id"]


def run_ours(
    stack,
    n: int,
    number: int,
    timeout: float,
    channel: str = "push",
    *,
    reset: bool = True,
    preferences: bool = False,
) -> dict:
    """One campaign over n fresh subscriptions of `channel`; its figures. Runs after the
    first empty the tables first, unless `reset` is false (the other rows stay; the run's
    own application and audience are new either way). `preferences`: the recipients' rules
    apply to every target (preferences_seed) and the campaign has their category."""
    from bench.seed import create_application, seed_subscriptions
    from campaigns.models import CampaignRun, RunStatus

    if number > 1 and reset:
        reset_data()
    application, key = create_application(stack.fakes, f"bench-campaign-{number}")
    browsers = None
    if channel == "WebPush":
        browsers = [(b["endpoint"], b["keys"]) for b in stack.fakes.webpush_subscribe_many(n)]
    seeded = seed_subscriptions(application, n, channel=channel, browsers=browsers)
    print(f"run {number}: seeded {n} in {seeded['seconds']} s", flush=True)
    seeded_preferences = preferences_seed(application) if preferences else {}
    settled = settle_audience()
    campaign_id = create_campaign(stack, key, channel, CATEGORY if preferences else "")
    stack.fakes.reset()
    stack.sample_rss()
    counters_before = pg_counters()
    before = {"pg": counters_before, "statements": worker_statements(stack)}
    before["redis"] = redis_commands()
    meter = CpuMeter(stack.cpu_roots()).start()
    status, body = http_json("POST", f"{stack.web_url}/api/v1/campaigns/{campaign_id}/execute", key)
    if status != 202:
        raise RuntimeError(f"execute answered {status}: {body}")
    started = time.monotonic()
    state = {}

    def done() -> bool:
        run = CampaignRun.objects.filter(campaign_id=campaign_id).first()
        state["run"] = run
        if run is None:
            return False
        return run.status != RunStatus.RUNNING or (run.fanout_done and run.pending <= 0)

    def progress() -> str:
        run = state.get("run")
        if run is None:
            return "  waiting for the run"
        return (
            f"  {time.monotonic() - started:5.1f} s: targeted {run.targeted}, pending "
            f"{run.pending}, successful {run.successful}, failed {run.failed}"
        )

    finished = wait_until(done, stack, timeout, progress)
    elapsed = time.monotonic() - started
    meter.stop()
    counters_after = pg_counters()
    after = {"pg": counters_after, "statements": worker_statements(stack)}
    after["redis"] = redis_commands()
    stack.sample_rss()
    run = state.get("run")
    figures = message_figures(campaign_run_id=run.pk) if run else {}
    if channel == "InAppMessage":
        figures["inbox_items"] = inbox_items(application.pk)
    ok = bool(
        finished
        and run.status == RunStatus.COMPLETED
        and figures.get("messages") == n
        and figures.get("successful") == n
        and figures.get("inbox_items", n) == n
        and run.skips()["skipped"] == 0
        and run.scheduled == 0
    )
    result = {
        "run": number,
        "n": n,
        "preferences": preferences,
        **seeded_preferences,
        "ok": ok,
        "finished": finished,
        "run_status": run.status if run else None,
        "elapsed_s": round(elapsed, 2),
        "messages_per_second": round(n / elapsed) if finished else None,
        **figures,
        "cpu_share": meter.shares(),
        "fake_requests": _fake_requests(stack),
        "seed_rows_per_second": seeded["rows_per_second"],
        **settled,
        "per_message": breakdown(stack, n, meter, before, after),
    }
    if counters_before and counters_after:
        result["wal_mb_per_1000_messages"] = round(
            (counters_after[0] - counters_before[0]) / 1e6 / (n / 1000), 2
        )
        result["wal_full_page_images"] = counters_after[1] - counters_before[1]
        result["blocks_read_per_1000_messages"] = round(
            (counters_after[2] - counters_before[2]) / (n / 1000), 1
        )
    print(
        f"run {number}{' (preferences)' if preferences else ''}: {n} messages in "
        f"{elapsed:.2f} s = {result['messages_per_second']} msg/s; "
        f"created->successful p50 {figures.get('p50_created_to_successful_ms')} ms, "
        f"p95 {figures.get('p95_created_to_successful_ms')} ms; ok={ok}",
        flush=True,
    )
    return result


def _fake_requests(stack) -> dict:
    try:
        return {
            "apns": stack.fakes.apns_stats().get("requests"),
            "fcm": stack.fakes.fcm_stats().get("requests"),
            "smtp": stack.fakes.smtp_stats().get("requests"),
            "sms": stack.fakes.sms_stats().get("requests"),
            "webpush": stack.fakes.webpush_stats().get("requests"),
            "kakao": stack.fakes.kakao_stats().get("requests"),
        }
    except Exception as exc:  # the figures matter more than the counters
        return {"error": str(exc)}


def run_baseline(stack, m: int, timeout: float) -> dict:
    """The naive design over m fresh subscriptions: one task and one row write per step."""
    from django.db.models import Count, Q

    from bench.naive import FANOUT_TASK
    from bench.seed import TAGS, create_application, seed_subscriptions
    from messaging.models import Message, MessageStatus
    from signal_project.celery import app

    reset_data()
    application, _key = create_application(stack.fakes, "bench-baseline")
    seed_subscriptions(application, m)
    campaign_id = str(uuid.uuid4())
    stack.fakes.reset()
    meter = CpuMeter(stack.cpu_roots()).start()
    started = time.monotonic()
    app.send_task(
        FANOUT_TASK,
        args=[str(application.pk), campaign_id, TAGS, "Summer sale", "Everything 20% off"],
        queue="campaigns",
    )
    messages = Message.objects.filter(campaign_id=campaign_id)
    counts = {}

    def done() -> bool:
        counts.update(
            messages.aggregate(
                total=Count("pk"), terminal=Count("pk", filter=~Q(status=MessageStatus.PENDING))
            )
        )
        return counts["terminal"] >= m

    def progress() -> str:
        return (
            f"  baseline {time.monotonic() - started:5.1f} s: created {counts.get('total')}, "
            f"terminal {counts.get('terminal')}"
        )

    finished = wait_until(done, stack, timeout, progress)
    elapsed = time.monotonic() - started
    meter.stop()
    figures = message_figures(campaign_id=campaign_id)
    ok = finished and figures["messages"] == m and figures["successful"] == m
    result = {
        "n": m,
        "ok": ok,
        "finished": finished,
        "elapsed_s": round(elapsed, 2),
        "messages_per_second": round(m / elapsed) if finished else None,
        **figures,
        "cpu_share": meter.shares(),
    }
    print(
        f"baseline: {m} messages in {elapsed:.2f} s = {result['messages_per_second']} msg/s; "
        f"ok={ok}",
        flush=True,
    )
    return result


def summary(runs: list[dict], baseline: dict | None, stack, args) -> dict:
    """The JSON figures: the median over runs at the top, every run and the baseline below."""
    rss = sorted(stack.rss_peaks.values(), reverse=True)
    mps = median_of(runs, "messages_per_second")
    figures = {
        "benchmark": "campaign",
        "channel": args.channel,
        "preferences": args.preferences,
        "ok": all(r["ok"] for r in runs) and (baseline is None or baseline["ok"]),
        "n": args.n,
        "repeat": len(runs),
        "messages_per_second": round(mps) if mps else None,
        "elapsed_s": median_of(runs, "elapsed_s"),
        "p50_created_to_successful_ms": median_of(runs, "p50_created_to_successful_ms"),
        "p95_created_to_successful_ms": median_of(runs, "p95_created_to_successful_ms"),
        "worker_peak_rss_mb": round(rss[0], 1) if rss else None,
        "worker_peak_rss_mb_each": [round(v, 1) for v in rss],
        "fakes_cpu_share": median_of([r["cpu_share"] for r in runs], "fakes"),
        "cpu_share": {
            name: median_of([r["cpu_share"] for r in runs], name) for name in runs[0]["cpu_share"]
        },
        "baseline_n": baseline["n"] if baseline else None,
        "baseline_messages_per_second": baseline["messages_per_second"] if baseline else None,
        "speedup": (
            round(mps / baseline["messages_per_second"], 2)
            if baseline and mps and baseline["messages_per_second"]
            else None
        ),
        "workers": args.workers,
        "concurrency": args.concurrency or settings_concurrency(),
        "pool": args.pool or "prefork",
        "quiet_workers": args.quiet_workers,
        "runs": runs,
        "baseline": baseline,
        "machine": machine(),
    }
    return figures


def side_by_side(stack, args, timeout: float) -> dict:
    """--preferences-ab: `--repeat` rounds of A B B A (A plain, B with preferences), fresh
    data each run; each side's median and B's rate over A's."""
    sides: dict[str, list[dict]] = {"plain": [], "preferences": []}
    number = 0
    for _round in range(max(args.repeat, 1)):
        for side in ("plain", "preferences", "preferences", "plain"):
            number += 1
            sides[side].append(
                run_ours(
                    stack, args.n, number, timeout, args.channel,
                    preferences=side == "preferences",
                )
            )  # fmt: skip
    rates = {side: median_of(runs, "messages_per_second") for side, runs in sides.items()}
    figures = summary(sides["plain"] + sides["preferences"], None, stack, args)
    figures |= {
        "benchmark": "campaign-preferences-ab",
        "messages_per_second": None,
        "plain": _side(sides["plain"]),
        "preferences": _side(sides["preferences"]),
        "preferences_over_plain": (
            round(rates["preferences"] / rates["plain"], 3)
            if rates["plain"] and rates["preferences"]
            else None
        ),
    }
    return figures


def _side(runs: list[dict]) -> dict:
    mps = median_of(runs, "messages_per_second")
    return {
        "ok": all(r["ok"] for r in runs),
        "messages_per_second": round(mps) if mps else None,
        "each": [r["messages_per_second"] for r in runs],
        "p50_created_to_successful_ms": median_of(runs, "p50_created_to_successful_ms"),
        "p95_created_to_successful_ms": median_of(runs, "p95_created_to_successful_ms"),
        "wal_mb_per_1000_messages": median_of(runs, "wal_mb_per_1000_messages"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="subscriptions (100000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs on fresh data (1)")
    parser.add_argument("--baseline-n", type=int, default=None, help="default min(N, 20000)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    parser.add_argument(
        "--channel",
        choices=["push", "Email", "SMS", "KakaoTalk", "WebPush", "InAppMessage"],
        default="push",
        help="the audience's channel: push (half iOS, half Android; the default) or one other",
    )
    rules = parser.add_mutually_exclusive_group()
    rules.add_argument(
        "--preferences",
        action="store_true",
        help="every target's user has preferences, the application a frequency cap and the "
        "campaign a category: the recipients' rules run on every target, leaving none out",
    )
    rules.add_argument(
        "--preferences-ab",
        action="store_true",
        help="the plain bench and --preferences side by side: --repeat rounds of A B B A, "
        "both medians (no baseline)",
    )
    add_stack_arguments(parser)
    args = parser.parse_args()
    baseline_n = 0 if args.no_baseline else args.baseline_n or min(args.n, 20_000)
    timeout = args.timeout or max(60.0, args.n / 200)

    config = config_from(args)
    setup_django(config)  # before any Django import; the database is (re)made by the stack
    from bench.stack import running_stack_of

    if args.preferences_ab:
        with running_stack_of(config, args) as stack:
            figures = side_by_side(stack, args, timeout)
        plain, preferences = figures["plain"], figures["preferences"]
        print(
            f"campaign N={args.n}, {len(plain['each'])} runs a side (A B B A): plain "
            f"{plain['messages_per_second']} msg/s {plain['each']}, preferences "
            f"{preferences['messages_per_second']} msg/s {preferences['each']}; preferences/"
            f"plain {figures['preferences_over_plain']}; ok={figures['ok']}",
            flush=True,
        )
        emit(figures)
        return 0 if figures["ok"] else 1

    with running_stack_of(config, args) as stack:
        runs = [
            run_ours(stack, args.n, i + 1, timeout, args.channel, preferences=args.preferences)
            for i in range(max(args.repeat, 1))
        ]
        baseline = None
        if baseline_n:
            baseline = run_baseline(stack, baseline_n, max(60.0, baseline_n / 20))
        figures = summary(runs, baseline, stack, args)
    print(
        f"campaign N={args.n}: {figures['messages_per_second']} msg/s (median of {len(runs)}), "
        f"baseline {figures['baseline_messages_per_second']} msg/s, speedup "
        f"{figures['speedup']}x; worker peak RSS {figures['worker_peak_rss_mb']} MB; fakes "
        f"{figures['fakes_cpu_share']} of the CPU; ok={figures['ok']}",
        flush=True,
    )
    emit(figures)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
