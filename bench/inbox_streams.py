"""Open inbox streams on one ASGI process: N streams (`GET /api/v1/inbox/stream`) held open on
one hypercorn process (`--workers 0`: the process measured is the one serving), its memory,
and the publish-to-receive latency of events published while they are open.

    python bench/inbox_streams.py [--streams 1000] [--subscriptions 100] [--events 300]
                                  [--rate 50] [--db-name signal_bench_streams] [--redis-db 11]

The streams are spread over `--subscriptions` inboxes (so each event reaches streams/subscriptions
of them); `--events` message events are published through messaging.inbox.events at `--rate`
per second, each carrying its publish time; every stream records when each arrived. Loopback
only; the whole run is bounded by `--timeout` seconds. The last line is one JSON object:
streams open, RSS before and with them open (and per stream), the time to open them, the
Redis pub/sub subscribers per inbox channel, deliveries expected and received, latency
p50/p99/max (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BenchConfig,
    base_env,
    emit,
    machine,
    percentile,
    rounded,
    setup_django,
)
from bench.stack import free_port, fresh_database, fresh_redis, spawn, stop_all  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def seed(n_subscriptions: int):
    """An application, its server key and n InAppMessage subscriptions, by the services."""
    from accounts.models import ApiKey
    from accounts.services import api_key_create, application_create
    from messaging.services.subscriptions import SYSTEM, subscription_register

    application = application_create(name="bench-inbox-streams")
    key = api_key_create(application=application, scope=ApiKey.Scope.SERVER, name="bench").raw
    subscriptions = [
        subscription_register(
            application=application, actor=SYSTEM, type="InAppMessage", token=f"bench-{n}"
        )[0]
        for n in range(n_subscriptions)
    ]
    return key, [str(s.pk) for s in subscriptions]


async def hold_stream(session, url: str, opened: asyncio.Event, latencies: list, stop):
    """One stream: open, then record each message event's publish-to-receive latency."""
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"stream answered {response.status}: {await response.text()}")
        opened.set()
        data = None
        while not stop.is_set():
            line = await response.content.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                data = line[6:]
            elif line == b"\n" and data is not None:
                received = time.time()
                sent_at = json.loads(data).get("sent_at")
                if sent_at is not None:
                    latencies.append(received - sent_at)
                data = None


async def run(args, key: str, subscriptions: list[str], base_url: str, pid: int) -> dict:
    import aiohttp
    from asgiref.sync import sync_to_async

    from messaging.inbox import events

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30)
    latencies: list[float] = []
    stop = asyncio.Event()
    rss_before = rss_mb(pid)
    per_subscription: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks, openings = [], []
        started = time.perf_counter()
        gate = asyncio.Semaphore(100)  # streams being opened at once
        for n in range(args.streams):
            subscription_id = subscriptions[n % len(subscriptions)]
            per_subscription[subscription_id] = per_subscription.get(subscription_id, 0) + 1
            url = f"{base_url}/api/v1/inbox/stream?subscription_id={subscription_id}&api_key={key}"
            opened = asyncio.Event()

            async def opening(url=url, opened=opened):
                async with gate:
                    task = asyncio.create_task(hold_stream(session, url, opened, latencies, stop))
                    tasks.append(task)
                    waiter = asyncio.create_task(opened.wait())
                    done, _ = await asyncio.wait({task, waiter}, return_when="FIRST_COMPLETED")
                    if task in done:
                        waiter.cancel()
                        task.result()

            openings.append(opening())
        await asyncio.wait_for(asyncio.gather(*openings), args.timeout)
        open_seconds = time.perf_counter() - started
        await asyncio.sleep(1.0)  # the streams' first blocks; the process settles
        rss_open = rss_mb(pid)

        import redis

        client = redis.Redis.from_url(BenchConfig(redis_db=args.redis_db).redis_url)
        numsub = [
            count for _, count in client.pubsub_numsub(*(f"inbox:{s}" for s in subscriptions))
        ]

        def publish_one(subscription_id: str) -> None:
            sent_at = time.time()
            events.publish(
                [
                    events.InboxEvent(
                        subscription_id,
                        events.MESSAGE,
                        {"id": "bench", "title": "bench", "sent_at": sent_at},
                    )
                ]
            )

        expected = 0
        rng = random.Random(1)
        interval = 1.0 / args.rate
        publish_started = time.perf_counter()
        for i in range(args.events):
            subscription_id = rng.choice(subscriptions)
            expected += per_subscription.get(subscription_id, 0)
            await sync_to_async(publish_one, thread_sensitive=False)(subscription_id)
            due = publish_started + (i + 1) * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        deadline = time.monotonic() + 10
        while len(latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        rss_end = rss_mb(pid)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    ms = [latency * 1000 for latency in latencies]
    return {
        "streams": args.streams,
        "subscriptions": len(subscriptions),
        "open_seconds": rounded(open_seconds, 2),
        "rss_mb_before": rounded(rss_before),
        "rss_mb_open": rounded(rss_open),
        "rss_mb_after_events": rounded(rss_end),
        "rss_kb_per_stream": rounded((rss_open - rss_before) * 1024 / max(args.streams, 1)),
        "pubsub_subscribers_per_inbox_channel": sorted(set(numsub)),
        "events_published": args.events,
        "deliveries_expected": expected,
        "deliveries_received": len(ms),
        "latency_ms_p50": rounded(percentile(ms, 0.5)),
        "latency_ms_p99": rounded(percentile(ms, 0.99)),
        "latency_ms_max": rounded(max(ms) if ms else None),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="events published per second")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--db-name", default="signal_bench_streams", help="dropped first")
    parser.add_argument("--redis-db", type=int, default=11, help="flushed first")
    args = parser.parse_args()

    config = BenchConfig(db_name=args.db_name, redis_db=args.redis_db)
    fresh_database(config)
    fresh_redis(config)
    setup_django(config)
    key, subscriptions = seed(args.subscriptions)

    port = free_port()
    env = {**base_env(config), "INBOX_HEARTBEAT_SECONDS": "15"}
    logs = Path(tempfile.mkdtemp(prefix="bench-inbox-streams-"))
    command = [
        sys.executable, "-m", "hypercorn", "signal_project.asgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "0", "--backlog", "2048",
    ]  # fmt: skip
    service = spawn("asgi", command, env, logs)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or not service.alive():
                    print(service.log_tail(), file=sys.stderr)
                    raise SystemExit("hypercorn did not answer") from None
                time.sleep(0.2)
        figures = asyncio.run(
            run(args, key, subscriptions, f"http://127.0.0.1:{port}", service.pid)
        )
    finally:
        stop_all([service])
    emit({"bench": "inbox_streams", **figures, "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
