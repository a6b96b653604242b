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
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from bench.common import adapter_figures, send_batches_timed  # noqa: E402

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
            timed = send_batches_timed(adapter, credentials, batches, args.n, fakes.pid)
            stats = fakes.sms_stats()
        finally:
            adapter.close()
    sent, failed, wall = timed["sent"], timed["failed"], timed["wall"]
    if failed:
        raise SystemExit(f"{failed} of {sent} messages failed, e.g. {timed['failures'][:3]}")
    if stats["requests"] != args.n + args.batch:
        raise SystemExit(
            f"the fake counted {stats['requests']} requests, not {args.n + args.batch}"
        )
    figures = {
        "n": sent,
        "batch": args.batch,
        "concurrency": args.concurrency,
        # The rate, CPU per message, and the share of this machine each side would take at
        # the pipeline's target rate.
        **adapter_figures(timed, TARGET_RATE),
    }
    print(
        f"{sent} SMS in {wall:.2f} s = {sent / wall:,.0f} msg/s; CPU per 1,000: adapter "
        f"{figures['client_cpu_s_per_1000']} s, fake {figures['fake_cpu_s_per_1000']} s",
        flush=True,
    )
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
