"""Send-to-event latency under a campaign: one campaign over N InAppMessage subscriptions
through the whole pipeline (API, Celery workers, Redis, PostgreSQL: bench/campaign.py's stack)
while S of its inboxes each hold one open stream (`GET /api/v1/inbox/stream`) on one hypercorn
ASGI process (`--workers 0`: the process measured is the one serving).

    python bench/inbox_campaign_latency.py [--n 50000] [--streams 500] [--workers 2]
        [--concurrency 2] [--db-name signal_bench_inbox_latency] [--redis-db 11]

The S inboxes are spread evenly over the audience (every N/S-th subscription in id order), so
they sample the whole fan-out, not its first batch. Every `message` event a stream receives is
timed on arrival (the aiohttp clients run in the bench's own process, on loopback) and matched
with its message row afterwards:
- send-to-event: arrival - the message's created_at (the fan-out wrote it): what a user waits
  from the campaign reaching them to the bell moving;
- delivery-to-event: arrival - the message's sent_at (the delivery transaction's clock, which is
  also the item's created_at): the commit, the publish and the stream's fan-out.
The whole run is bounded (`--timeout` for the campaign, `--drain` for the last events). The
last line is one JSON object: the campaign's items/s and created -> successful percentiles,
streams open and subscribed, events expected and received, both latencies p50/p99/max (ms),
the ASGI process's RSS (before the streams, with them open, after the campaign, peak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuMeter,
    add_stack_arguments,
    config_from,
    emit,
    http_json,
    machine,
    peak_rss_mb,
    percentile,
    rounded,
    settings_concurrency,
    setup_django,
)

OPENING_AT_ONCE = 100


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def spread_subscriptions(application_id, count: int) -> list[str]:
    """`count` of the application's subscriptions, evenly spaced in id order."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM messaging_subscription WHERE application_id = %s ORDER BY id",
            [application_id],
        )
        ids = [str(row[0]) for row in cursor.fetchall()]
    count = min(count, len(ids))
    return [ids[i * len(ids) // count] for i in range(count)] if count else []


class Streams:
    """S open streams, read by aiohttp in an event loop of their own (a thread), while the
    main thread drives the campaign with Django. Each `message` event is kept as (message
    id, arrival time)."""

    def __init__(self, base_url: str, key: str, subscriptions: list[str]):
        self.base_url, self.key, self.subscriptions = base_url, key, subscriptions
        self.arrivals: list[tuple[str, float]] = []
        self.counts = 0
        self.errors: list[str] = []
        self.opened = threading.Event()
        self._open_count = 0
        self._stop = asyncio.Event()
        self.open_seconds: float | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._main: asyncio.Future | None = None

    def start(self, timeout: float) -> None:
        self.thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        if not self.opened.wait(timeout):
            raise TimeoutError(f"the streams were not open within {timeout} s: {self.errors[:3]}")
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} streams failed: {self.errors[:3]}")

    def stop(self) -> None:
        if self._main is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            try:
                self._main.result(timeout=30)
            except Exception as exc:  # the figures matter more than a stray teardown error
                print(f"  (streams' teardown: {exc!r})", flush=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def _run(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            gate = asyncio.Semaphore(OPENING_AT_ONCE)
            started = time.perf_counter()
            readers = [
                asyncio.create_task(self._hold(session, s, gate)) for s in self.subscriptions
            ]
            while self._open_count < len(self.subscriptions) and not self.errors:
                await asyncio.sleep(0.05)
            self.open_seconds = time.perf_counter() - started
            self.opened.set()
            await self._stop.wait()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _hold(self, session, subscription_id: str, gate: asyncio.Semaphore) -> None:
        url = (
            f"{self.base_url}/api/v1/inbox/stream?subscription_id={subscription_id}"
            f"&api_key={self.key}"
        )
        try:
            async with gate:
                response = await session.get(url)
            async with response:
                if response.status != 200:
                    self.errors.append(f"{response.status}: {(await response.text())[:200]}")
                    return
                self._open_count += 1
                event = data = None
                while True:
                    line = await response.content.readline()
                    if not line:
                        return
                    if line.startswith(b"event: "):
                        event = line[7:].strip()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                    elif line == b"\n":
                        if event == b"message" and data is not None:
                            self.arrivals.append((json.loads(data)["id"], time.time()))
                        elif event == b"count":
                            self.counts += 1
                        event = data = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors.append(repr(exc))


def start_asgi(stack):
    """One hypercorn process serving the ASGI app with the stack's environment."""
    from bench.stack import free_port, spawn

    port = free_port()
    command = [
        sys.executable, "-m", "hypercorn", "signal_project.asgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "0", "--backlog", "2048",
    ]  # fmt: skip
    service = spawn("asgi", command, {**stack.env, "INBOX_HEARTBEAT_SECONDS": "15"}, stack.log_dir)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base_url}/admin/login/", timeout=2)  # noqa: S310
            return service, base_url
        except OSError:
            if time.monotonic() > deadline or not service.alive():
                raise RuntimeError(f"hypercorn did not answer:\n{service.log_tail()}") from None
            time.sleep(0.2)


def wait_subscribed(redis_url: str, subscriptions: list[str], timeout: float = 30) -> list[int]:
    """Until every stream's inbox channel has its SUBSCRIBE (the stream subscribes after its
    headers); returns the distinct subscriber counts per channel."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while True:
        counts = []
        for start in range(0, len(subscriptions), 500):
            chunk = subscriptions[start : start + 500]
            counts += [c for _, c in client.pubsub_numsub(*(f"inbox:{s}" for s in chunk))]
        if min(counts, default=1) >= 1 or time.monotonic() > deadline:
            return sorted(set(counts))
        time.sleep(0.1)


def message_times(ids: list[str]) -> dict[str, tuple[float, float | None]]:
    """id -> (created_at, sent_at) as epoch seconds."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id::text, extract(epoch FROM created_at), extract(epoch FROM sent_at)"
            " FROM messaging_message WHERE id = ANY(%s::uuid[])",
            [ids],
        )
        return {i: (float(c), float(s) if s is not None else None) for i, c, s in cursor.fetchall()}


def run(stack, args) -> dict:
    from bench.campaign import (
        create_campaign,
        inbox_items,
        message_figures,
        settle_audience,
        wait_until,
    )
    from bench.seed import create_application, seed_subscriptions
    from bench.stack import stop_all
    from campaigns.models import CampaignRun, RunStatus

    application, key = create_application(stack.fakes, "bench-inbox-latency")
    seeded = seed_subscriptions(application, args.n, channel="InAppMessage")
    print(f"seeded {args.n} InAppMessage subscriptions in {seeded['seconds']} s", flush=True)
    settled = settle_audience()
    watched = spread_subscriptions(application.pk, args.streams)
    campaign_id = create_campaign(stack, key, "InAppMessage")

    asgi, base_url = start_asgi(stack)
    streams = None
    try:
        time.sleep(1.0)  # the process settles after its first request
        rss_before = rss_mb(asgi.pid)
        streams = Streams(base_url, key, watched)
        streams.start(args.timeout)
        subscribers = wait_subscribed(stack.config.redis_url, watched)
        rss_open = rss_mb(asgi.pid)
        print(
            f"{len(watched)} streams open in {streams.open_seconds:.1f} s on {base_url} "
            f"(RSS {rss_before:.1f} -> {rss_open:.1f} MB); executing the campaign",
            flush=True,
        )

        stack.sample_rss()
        roots = {**stack.cpu_roots(), "asgi": [asgi.pid]}
        meter = CpuMeter(roots).start()
        status, body = http_json(
            "POST", f"{stack.web_url}/api/v1/campaigns/{campaign_id}/execute", key
        )
        if status != 202:
            raise RuntimeError(f"execute answered {status}: {body}")
        started = time.monotonic()
        state = {}

        def done() -> bool:
            campaign_run = CampaignRun.objects.filter(campaign_id=campaign_id).first()
            state["run"] = campaign_run
            if campaign_run is None:
                return False
            return campaign_run.status != RunStatus.RUNNING or (
                campaign_run.fanout_done and campaign_run.pending <= 0
            )

        def progress() -> str:
            campaign_run = state.get("run")
            if campaign_run is None:
                return "  waiting for the run"
            return (
                f"  {time.monotonic() - started:5.1f} s: successful {campaign_run.successful} "
                f"of {campaign_run.targeted}, events received {len(streams.arrivals)} "
                f"of {len(watched)}"
            )

        finished = wait_until(done, stack, args.timeout, progress)
        elapsed = time.monotonic() - started
        meter.stop()
        deadline = time.monotonic() + args.drain
        while len(streams.arrivals) < len(watched) and time.monotonic() < deadline:
            time.sleep(0.05)
        rss_end, rss_peak = rss_mb(asgi.pid), peak_rss_mb(asgi.pid)
        asgi_alive = asgi.alive()
        streams.stop()
        streams_errors = streams.errors[:]
    finally:
        if streams is not None and streams.thread.is_alive():
            streams.stop()
        stop_all([asgi])

    campaign_run = state.get("run")
    figures = message_figures(campaign_run_id=campaign_run.pk) if campaign_run else {}
    items = inbox_items(application.pk)
    arrivals = streams.arrivals
    times = message_times([message_id for message_id, _ in arrivals])
    send_ms, delivery_ms = [], []
    for message_id, arrived in arrivals:
        created_at, sent_at = times.get(message_id, (None, None))
        if created_at is not None:
            send_ms.append((arrived - created_at) * 1000)
        if sent_at is not None:
            delivery_ms.append((arrived - sent_at) * 1000)
    distinct = len({message_id for message_id, _ in arrivals})
    ok = bool(
        finished
        and campaign_run.status == RunStatus.COMPLETED
        and figures.get("successful") == args.n
        and items == args.n
        and distinct == len(arrivals) == len(watched)
        and len(send_ms) == len(watched)
        and asgi_alive
        and not streams_errors
    )
    shares = meter.shares()
    return {
        "ok": ok,
        "n": args.n,
        "streams": len(watched),
        "finished": finished,
        "run_status": campaign_run.status if campaign_run else None,
        "elapsed_s": round(elapsed, 2),
        "items_per_second": round(args.n / elapsed) if finished else None,
        "inbox_items": items,
        **figures,
        "streams_open_seconds": rounded(streams.open_seconds, 2),
        "pubsub_subscribers_per_inbox_channel": subscribers,
        "events_expected": len(watched),
        "events_received": len(arrivals),
        "events_distinct": distinct,
        "count_events_received": streams.counts,
        "send_to_event_ms_p50": rounded(percentile(send_ms, 0.5)),
        "send_to_event_ms_p99": rounded(percentile(send_ms, 0.99)),
        "send_to_event_ms_max": rounded(max(send_ms) if send_ms else None),
        "delivery_to_event_ms_p50": rounded(percentile(delivery_ms, 0.5)),
        "delivery_to_event_ms_p99": rounded(percentile(delivery_ms, 0.99)),
        "delivery_to_event_ms_max": rounded(max(delivery_ms) if delivery_ms else None),
        "asgi_rss_mb_before": rounded(rss_before),
        "asgi_rss_mb_open": rounded(rss_open),
        "asgi_rss_mb_after_campaign": rounded(rss_end),
        "asgi_rss_mb_peak": rounded(rss_peak),
        "asgi_cpu_share": shares.get("asgi"),
        "cpu_share": shares,
        "stream_errors": streams_errors[:5],
        "seed_rows_per_second": seeded["rows_per_second"],
        **settled,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="subscriptions (50000)")
    parser.add_argument("--streams", type=int, default=500, help="open streams (500)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the campaign")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds for the last events")
    add_stack_arguments(parser)
    parser.set_defaults(db_name="signal_bench_inbox_latency")
    args = parser.parse_args()
    args.timeout = args.timeout or max(60.0, args.n / 200)

    config = config_from(args)
    setup_django(config)  # before any Django import; the database is (re)made by the stack
    from bench.stack import running_stack_of

    with running_stack_of(config, args) as stack:
        figures = run(stack, args)
        rss = sorted(stack.rss_peaks.values(), reverse=True)
    print(
        f"inbox campaign N={args.n}, {figures['streams']} streams: {figures['items_per_second']} "
        f"items/s; send-to-event p50 {figures['send_to_event_ms_p50']} / p99 "
        f"{figures['send_to_event_ms_p99']} ms, delivery-to-event p50 "
        f"{figures['delivery_to_event_ms_p50']} / p99 {figures['delivery_to_event_ms_p99']} ms; "
        f"ASGI RSS {figures['asgi_rss_mb_open']} MB open; ok={figures['ok']}",
        flush=True,
    )
    emit(
        {
            "benchmark": "inbox_campaign_latency",
            **figures,
            "worker_peak_rss_mb": round(rss[0], 1) if rss else None,
            "workers": args.workers,
            "concurrency": args.concurrency or settings_concurrency(),
            "pool": args.pool or "prefork",
            "quiet_workers": args.quiet_workers,
            "machine": machine(),
        }
    )
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
