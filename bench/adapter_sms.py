"""What the SMS adapter costs: N messages through `TwilioSMSAdapter` to the fake Twilio, in
batches of 500 from this one process.

    .venv/bin/python bench/adapter_sms.py [-n 20000] [--batch 500] [--concurrency 50]

Starts `fakes.process.running_fake_providers`, warms the adapter up with one batch (connections,
the HTTP/2 probe), then sends N messages and reports the rate, this process's CPU (the
adapter's side of each request, and the batch's bookkeeping) and the fake's CPU (utime+stime
from /proc/<pid>/stat) apart, each per 1,000 messages, and what they would take of the
machine at 2,000 SMS/s. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from bench.common import cpu_seconds, machine_busy_seconds  # noqa: E402

TARGET_RATE = 2_000  # SMS/s the whole pipeline should reach on this machine


def _messages(count: int) -> list:
    from adapters.base import OutboundMessage

    # +1415555xxxx: no number range of the fake's conventions, so every send is accepted.
    return [
        OutboundMessage(
            message_id=str(uuid.uuid4()),
            token=f"+1415555{i % 10_000:04d}",
            body=f"Your order #{i} has shipped and arrives on Thursday. Reply STOP to opt out.",
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages (20000)")
    parser.add_argument("--batch", type=int, default=500, help="messages per send_batch (500)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight (50)")
    args = parser.parse_args()

    import django

    django.setup()
    from adapters.sms import TwilioSMSAdapter
    from fakes.process import running_fake_providers

    with running_fake_providers() as fakes:
        print(f"fakes pid {fakes.pid}, {os.cpu_count()} CPUs", flush=True)
        adapter = TwilioSMSAdapter(
            endpoint=fakes.sms_endpoint, timeout=30, concurrency=args.concurrency
        )
        credentials = fakes.sms_credentials()
        try:
            warm = adapter.send_batch(credentials, _messages(args.batch))
            if not all(r.ok for r in warm):
                raise SystemExit(f"warm-up failed: {[r for r in warm if not r.ok][:3]}")
            batches = [_messages(args.batch) for _ in range(-(-args.n // args.batch))]
            fake_before, busy_before = cpu_seconds(fakes.pid), machine_busy_seconds()
            client_before, started = time.process_time(), time.perf_counter()
            sent = failed = 0
            failures = []
            for messages in batches:
                messages = messages[: args.n - sent]
                results = adapter.send_batch(credentials, messages)
                sent += len(messages)
                failed += sum(not r.ok for r in results)
                failures += [r for r in results if not r.ok][:3]
            wall = time.perf_counter() - started
            client_cpu = time.process_time() - client_before
            fake_cpu = cpu_seconds(fakes.pid) - fake_before
            busy = machine_busy_seconds() - busy_before
            stats = fakes.sms_stats()
        finally:
            adapter.close()
    if failed:
        raise SystemExit(f"{failed} of {sent} messages failed, e.g. {failures[:3]}")
    if stats["requests"] != args.n + args.batch:
        raise SystemExit(
            f"the fake counted {stats['requests']} requests, not {args.n + args.batch}"
        )
    cores = os.cpu_count() or 1
    figures = {
        "n": sent,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "msg_per_s": round(sent / wall, 1),
        "wall_s": round(wall, 3),
        "client_cpu_s_per_1000": round(client_cpu / sent * 1000, 4),
        "fake_cpu_s_per_1000": round(fake_cpu / sent * 1000, 4),
        "client_us_per_msg": round(client_cpu / sent * 1e6, 1),
        "fake_us_per_msg": round(fake_cpu / sent * 1e6, 1),
        # The share of this machine each side would take at the pipeline's target rate.
        f"client_share_at_{TARGET_RATE}": round(client_cpu / sent * TARGET_RATE / cores, 3),
        f"fake_share_at_{TARGET_RATE}": round(fake_cpu / sent * TARGET_RATE / cores, 3),
        "others_load_share": round(max(busy - client_cpu - fake_cpu, 0.0) / (wall * cores), 3),
    }
    print(
        f"{sent} SMS in {wall:.2f} s = {sent / wall:,.0f} msg/s; CPU per 1,000: adapter "
        f"{figures['client_cpu_s_per_1000']} s, fake {figures['fake_cpu_s_per_1000']} s",
        flush=True,
    )
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
