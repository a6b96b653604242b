"""What the e-mail adapter costs: N messages through `EmailAdapter` to the fake SMTP relay, in
batches of 500 from this one process.

    .venv/bin/python bench/adapter_email.py [-n 20000] [--batch 500] [--connections 4]
                                            [--security starttls] [--personal]

Starts `fakes.process.running_fake_providers`, warms the adapter up with one batch (its
connections: TCP, STARTTLS, AUTH), then sends N messages (a campaign's: the same subject, text
and HTML for all, per-recipient To, Message-ID and List-Unsubscribe; `--personal` makes every
message's content distinct, as a template with per-user variables would) and reports the rate,
this process's CPU (building the messages and the adapter's side of SMTP) and the fake's CPU
(utime+stime from /proc/<pid>/stat) apart, each per 1,000 messages, and what they would take of
the machine at 1,000 e-mails/s. The last line printed is one JSON object.
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

TARGET_RATE = 1_000  # e-mails/s the whole pipeline should reach on this machine

TEXT = (
    "Hello,\n\nOur spring sale starts today: everything is 20% off until Sunday, and members "
    "get free shipping on every order.\n\nSee you there,\nThe Signal Shop team\n"
)
HTML = (
    "<html><body><h1>Spring sale</h1><p>Everything is <b>20% off</b> until Sunday, and "
    'members get free shipping on every order.</p><p><a href="https://shop.example.com/sale">'
    "Shop the sale</a></p><p>The Signal Shop team</p></body></html>"
)


def _messages(count: int, *, personal: bool) -> list:
    from adapters.base import OutboundMessage

    messages = []
    for i in range(count):
        message_id = str(uuid.uuid4())
        # "user-": no local-part convention of the fake relay, so every message is accepted.
        name = f"Member {i}, " if personal else ""
        messages.append(
            OutboundMessage(
                message_id=message_id,
                token=f"user-{message_id[:8]}@example.com",
                title="Spring sale: 20% off everything",
                body=name + TEXT,
                parts={"html": HTML.replace("<h1>", f"<h1>{name}") if personal else HTML},
                unsubscribe_url=f"https://signal.example.com/u/{message_id}",
            )
        )
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages (20000)")
    parser.add_argument("--batch", type=int, default=500, help="messages per send_batch (500)")
    parser.add_argument("--connections", type=int, default=4, help="connections per relay (4)")
    parser.add_argument("--security", default="starttls", choices=("starttls", "tls", "none"))
    parser.add_argument("--personal", action="store_true", help="distinct content per message")
    args = parser.parse_args()

    import django

    django.setup()
    from adapters.email import EmailAdapter
    from fakes.process import running_fake_providers

    with running_fake_providers() as fakes:
        print(f"fakes pid {fakes.pid}, {os.cpu_count()} CPUs", flush=True)
        adapter = EmailAdapter(
            timeout=30, connections_per_relay=args.connections, ca_file=fakes.ca_file
        )
        credentials = fakes.email_credentials(args.security)
        try:
            warm = adapter.send_batch(credentials, _messages(args.batch, personal=args.personal))
            if not all(r.ok for r in warm):
                raise SystemExit(f"warm-up failed: {[r for r in warm if not r.ok][:3]}")
            batches = [
                _messages(args.batch, personal=args.personal)
                for _ in range(-(-args.n // args.batch))
            ]
            timed = send_batches_timed(adapter, credentials, batches, args.n, fakes.pid)
            stats = fakes.smtp_stats()
        finally:
            adapter.close()
    sent, failed, wall = timed["sent"], timed["failed"], timed["wall"]
    if failed:
        raise SystemExit(f"{failed} of {sent} messages failed, e.g. {timed['failures'][:3]}")
    if stats["by_status"].get("250") != args.n + args.batch:
        raise SystemExit(f"the fake accepted {stats['by_status']}, not {args.n + args.batch}")
    figures = {
        "n": sent,
        "batch": args.batch,
        "connections": args.connections,
        "security": args.security,
        "personal": args.personal,
        "fake_connections": stats.get("connections", 0),
        # The rate, CPU per message, and the share of this machine each side would take at
        # the pipeline's target rate.
        **adapter_figures(timed, TARGET_RATE),
    }
    print(
        f"{sent} e-mails in {wall:.2f} s = {sent / wall:,.0f} msg/s; CPU per 1,000: adapter "
        f"{figures['client_cpu_s_per_1000']} s, fake {figures['fake_cpu_s_per_1000']} s",
        flush=True,
    )
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
