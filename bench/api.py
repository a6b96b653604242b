"""API latency: single-message POST /api/v1/messages at a fixed request rate (open loop: each
request leaves at its scheduled time, whether or not earlier ones have answered), then how
long the accepted messages took to become successful.

    python bench/api.py --rate 200 --duration 20 [--subscriptions 2000]

Prints progress, and as its last line one JSON object: requests, achieved rate, p50/p95/p99
request latency, errors, p50/p95 accepted-to-successful, "ok".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuMeter,
    add_stack_arguments,
    config_from,
    emit,
    machine,
    percentile,
    rounded,
    settings_concurrency,
    setup_django,
)

WAIT_TERMINAL_SECONDS = 60.0
WARM_UP_SECONDS = 1.0


async def _one(session, url: str, key: str, subscription_id: str, scheduled: float) -> dict:
    """One request; latency from when it was sent, lag from when it was due."""
    sent = time.perf_counter()
    body = {"subscription_id": subscription_id, "title": "Hello", "body": "Your order shipped"}
    try:
        async with session.post(url, json=body, headers={"X-API-Key": key}) as response:
            payload = await response.json(content_type=None)
            status = response.status
    except Exception as exc:  # a refused or reset connection is an error, not a crash
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}", "latency": None}
    done = time.perf_counter()
    message_id = None
    if status == 202 and payload.get("messages"):
        message_id = payload["messages"][0]["id"]
    return {
        "status": status,
        "latency": (done - sent) * 1000,
        "lag": (sent - scheduled) * 1000,
        "sent_at": time.time() - (done - sent),  # wall clock, to line up with other logs
        "message_id": message_id,
    }


async def load(url: str, key: str, subscription_ids: list[str], rate: float, duration: float):
    """Sends rate*duration requests at fixed times; returns each one's outcome."""
    import aiohttp

    total = int(rate * duration)
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop_start = time.perf_counter() + 0.1
        tasks = []
        for i in range(total):
            scheduled = loop_start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sub = subscription_ids[i % len(subscription_ids)]
            tasks.append(asyncio.create_task(_one(session, url, key, sub, scheduled)))
        sent_for = time.perf_counter() - loop_start
        results = await asyncio.gather(*tasks)
    return results, sent_for


def accepted_to_successful(message_ids: list[str], timeout: float) -> dict:
    """Waits until the accepted messages are terminal; percentiles of sent_at - created_at."""
    from django.db import connection

    from messaging.models import Message, MessageStatus

    messages = Message.objects.filter(pk__in=message_ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not messages.filter(status=MessageStatus.PENDING).exists():
            break
        time.sleep(0.2)
    sql = """
        SELECT count(*), count(*) FILTER (WHERE status = 'successful'),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)
        FROM (SELECT status, extract(epoch FROM sent_at - created_at) * 1000 AS ms
              FROM messaging_message WHERE id = ANY(%s::uuid[])) AS m
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [message_ids])
        count, successful, p50, p95 = cursor.fetchone()
    return {
        "messages": count,
        "successful": successful,
        "p50_accepted_to_successful_ms": rounded(p50),
        "p95_accepted_to_successful_ms": rounded(p95),
    }


def run(stack, args) -> dict:
    from bench.seed import create_application, seed_subscriptions
    from messaging.models import Subscription

    application, key = create_application(stack.fakes, "bench-api")
    seed_subscriptions(application, args.subscriptions)
    ids = [
        str(pk)
        for pk in Subscription.objects.filter(application=application).values_list("pk", flat=True)
    ]
    url = f"{stack.web_url}/api/v1/messages"
    # Warm-up (not counted), at the measured rate: every web thread the load will use has
    # served a request (imported, connected to PostgreSQL and Redis) before the clock starts.
    asyncio.run(load(url, key, ids, rate=args.rate, duration=WARM_UP_SECONDS))
    meter = CpuMeter(stack.cpu_roots()).start()
    print(f"sending {int(args.rate * args.duration)} requests at {args.rate}/s ...", flush=True)
    results, sent_for = asyncio.run(load(url, key, ids, args.rate, args.duration))
    meter.stop()
    latencies = [r["latency"] for r in results if r["status"] == 202]
    if args.latencies_file:
        Path(args.latencies_file).write_text(json.dumps(results))
    lags = [r["lag"] for r in results if r.get("lag") is not None]
    errors = [r for r in results if r["status"] != 202]
    message_ids = [r["message_id"] for r in results if r.get("message_id")]
    delivery = accepted_to_successful(message_ids, WAIT_TERMINAL_SECONDS)
    ok = bool(
        results
        and not errors
        and delivery["messages"] == len(results)
        and delivery["successful"] == len(results)
    )
    return {
        "benchmark": "api",
        "ok": ok,
        "rate": args.rate,
        "duration_s": args.duration,
        "requests": len(results),
        # Intervals between the first and the last send.
        "rate_achieved": round((len(results) - 1) / sent_for, 1) if sent_for else None,
        "errors": len(errors),
        "error_samples": sorted({str(e.get("error") or e["status"]) for e in errors})[:5],
        "p50_latency_ms": rounded(percentile(latencies, 0.5)),
        "p95_latency_ms": rounded(percentile(latencies, 0.95)),
        "p99_latency_ms": rounded(percentile(latencies, 0.99)),
        "max_latency_ms": rounded(max(latencies) if latencies else None),
        "p99_send_lag_ms": rounded(percentile(lags, 0.99)),
        **delivery,
        "cpu_share": meter.shares(),
        "web_workers": args.web_workers,
        "workers": args.workers,
        "concurrency": args.concurrency or settings_concurrency(),
        "machine": machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (20)")
    parser.add_argument("--subscriptions", type=int, default=2000, help="seeded (2000)")
    parser.add_argument(
        "--latencies-file", help="write every request (sent_at, latency, lag, status) as JSON"
    )
    add_stack_arguments(parser)
    args = parser.parse_args()

    config = config_from(args)
    setup_django(config)
    from bench.stack import running_stack_of

    with running_stack_of(config, args) as stack:
        figures = run(stack, args)
    print(
        f"api: {figures['requests']} requests at {figures['rate_achieved']}/s: latency p50 "
        f"{figures['p50_latency_ms']} ms, p99 {figures['p99_latency_ms']} ms, "
        f"{figures['errors']} errors; accepted->successful p50 "
        f"{figures['p50_accepted_to_successful_ms']} ms; ok={figures['ok']}",
        flush=True,
    )
    emit(figures)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
