"""What a push send costs in the worker: N messages through APNsAdapter and FCMAdapter to the
fake providers, in batches, from this one process (no database, no broker).

    .venv/bin/python bench/adapter_push.py [-n 20000] [--batch 500] [--channel both]
                                           [--profile /tmp/push.prof]

Starts `fakes.process.running_fake_providers`, warms each adapter up with one batch
(connections, the provider token, FCM's OAuth token), then sends N messages per channel and
reports msg/s and this process's CPU microseconds per message (payload, HPACK, HTTP/2
framing, TLS, the answer's classification) and, apart, the fakes' (from /proc/<pid>/stat).
With --profile, cProfile's statistics of the timed part go to that file. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from bench.common import cpu_seconds, emit, machine, rounded  # noqa: E402


def _messages(count: int, start: int, channel: str):
    from adapters.base import OutboundMessage
    from bench.seed import android_token, ios_token

    return [
        OutboundMessage(
            message_id=str(uuid.uuid4()),
            token=(ios_token if channel == "iOSPush" else android_token)(7, start + i),
            title="Summer sale starts today",
            body="Everything in the store is 30% off until Sunday. Tap to see what's new.",
            data={"campaign": "summer-2026", "n": str(start + i)},
        )
        for i in range(count)
    ]


def _adapter(channel: str, fakes):
    from adapters.apns import APNsAdapter
    from adapters.fcm import FCMAdapter

    if channel == "iOSPush":
        return APNsAdapter(fakes.apns_endpoint, ca_file=fakes.ca_file), fakes.apns_credentials()
    return FCMAdapter(endpoint=fakes.fcm_endpoint), fakes.fcm_credentials()


def measure(channel: str, fakes, n: int, batch: int, profiler: cProfile.Profile | None) -> dict:
    adapter, credentials = _adapter(channel, fakes)
    warm = adapter.send_batch(credentials, _messages(batch, 10**7, channel))
    assert all(result.ok for result in warm), [r for r in warm if not r.ok][:3]
    sent = ok = 0
    fake_before, own_before = cpu_seconds(fakes.pid), time.process_time()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    while sent < n:
        messages = _messages(min(batch, n - sent), sent, channel)
        results = adapter.send_batch(credentials, messages)
        ok += sum(result.ok for result in results)
        sent += len(messages)
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started
    own = time.process_time() - own_before
    fake = cpu_seconds(fakes.pid) - fake_before
    adapter.close()
    return {
        "n": sent,
        "ok": ok,
        "msg_per_s": rounded(sent / elapsed),
        "adapter_cpu_us_per_message": rounded(own / sent * 1e6),
        "fake_cpu_us_per_message": rounded(fake / sent * 1e6),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages per channel (20,000)")
    parser.add_argument("--batch", type=int, default=500, help="messages per batch (500)")
    parser.add_argument("--channel", choices=("iOSPush", "AndroidPush", "both"), default="both")
    parser.add_argument("--profile", help="write cProfile statistics of the sends here")
    args = parser.parse_args(argv)

    import django

    django.setup()
    from fakes.process import running_fake_providers

    channels = ("iOSPush", "AndroidPush") if args.channel == "both" else (args.channel,)
    profiler = cProfile.Profile() if args.profile else None
    figures: dict = {"bench": "adapter_push", "machine": machine(), "batch": args.batch}
    with running_fake_providers() as fakes:
        for channel in channels:
            figures[channel] = measure(channel, fakes, args.n, args.batch, profiler)
            line = figures[channel]
            print(
                f"{channel}: {line['n']} in batches of {args.batch}, {line['msg_per_s']} msg/s, "
                f"{line['ok']} ok; CPU per message: adapter {line['adapter_cpu_us_per_message']}"
                f" us, fake {line['fake_cpu_us_per_message']} us",
                flush=True,
            )
    if profiler is not None:
        profiler.dump_stats(args.profile)
    emit(figures)
    return 0 if all(figures[c]["ok"] == figures[c]["n"] for c in channels) else 1


if __name__ == "__main__":
    sys.exit(main())
