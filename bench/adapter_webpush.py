"""What Web Push costs: N messages through WebPushAdapter to the fake push service, in batches,
from this one process.

    .venv/bin/python bench/adapter_webpush.py [-n 20000] [--batch 500] [--subscriptions 500]
                                              [--concurrency 100]

Starts `fakes.process.running_fake_providers`, makes the subscriptions at the fake, warms the
adapter up with one batch (connections, the VAPID JWT), then sends N messages and reports:
msg/s; this process's CPU seconds per 1,000 messages (the adapter: payload, ECDH, HKDF,
AES-GCM, the JWT lookup, HTTP/1.1) and, apart, the fake's (from /proc/<pid>/stat: checks,
decryption, storing). For scale it also times the two cryptographic halves alone, in this
process: `encrypt_payload` (what the adapter cannot avoid per message) and http_ece's
decryption (what the fake cannot avoid). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
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


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _messages(subscriptions, count: int, start: int):
    from adapters.base import OutboundMessage

    return [
        OutboundMessage(
            message_id=str(uuid.uuid4()),
            token=subscriptions[i % len(subscriptions)]["endpoint"],
            keys=subscriptions[i % len(subscriptions)]["keys"],
            title="Summer sale starts today",
            body="Everything in the store is 30% off until Sunday. Tap to see what's new.",
            data={"campaign": "summer-2026", "n": start + i},
            parts={
                "url": "https://shop.example.com/sale",
                "icon": "https://shop.example.com/i.png",
            },
        )
        for i in range(count)
    ]


def crypto_alone(subscription, payload: bytes, rounds: int = 2000) -> dict[str, float]:
    """CPU microseconds per message of the encryption and of the decryption, alone."""
    import http_ece
    from cryptography.hazmat.primitives.asymmetric import ec

    from adapters.webpush import encrypt_payload

    receiver = ec.generate_private_key(ec.SECP256R1())
    point = receiver.public_key().public_numbers()
    p256dh = b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")
    auth = _unb64(subscription["keys"]["auth"])
    started = time.process_time()
    bodies = [encrypt_payload(payload, p256dh, auth) for _ in range(rounds)]
    encrypt_us = (time.process_time() - started) / rounds * 1e6
    started = time.process_time()
    for body in bodies:
        http_ece.decrypt(body, private_key=receiver, auth_secret=auth, version="aes128gcm")
    decrypt_us = (time.process_time() - started) / rounds * 1e6
    return {"encrypt_us": encrypt_us, "decrypt_us": decrypt_us}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages to send (20,000)")
    parser.add_argument("--batch", type=int, default=500, help="messages per batch (500)")
    parser.add_argument("--subscriptions", type=int, default=500, help="distinct endpoints")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    args = parser.parse_args(argv)

    from adapters.webpush import WebPushAdapter, payload_of
    from fakes.process import running_fake_providers

    figures: dict = {"bench": "adapter_webpush", "machine": machine(), "n": args.n}
    with running_fake_providers() as fakes:
        subscriptions = fakes.webpush_subscribe_many(args.subscriptions)
        credentials = fakes.webpush_credentials()
        adapter = WebPushAdapter(["127.0.0.1"], timeout=30, concurrency=args.concurrency)
        warm = adapter.send_batch(credentials, _messages(subscriptions, args.batch, -args.batch))
        assert all(result.ok for result in warm), [r for r in warm if not r.ok][:3]
        fakes.reset()

        sent = ok = 0
        fake_before, own_before = cpu_seconds(fakes.pid), time.process_time()
        started = time.perf_counter()
        while sent < args.n:
            batch = _messages(subscriptions, min(args.batch, args.n - sent), sent)
            results = adapter.send_batch(credentials, batch)
            ok += sum(result.ok for result in results)
            sent += len(batch)
        elapsed = time.perf_counter() - started
        own = time.process_time() - own_before
        fake = cpu_seconds(fakes.pid) - fake_before
        stats = fakes.webpush_stats()
        client = adapter._clients[credentials.key]
        adapter.close()

        sample = _messages(subscriptions, 1, 0)[0]
        alone = crypto_alone(subscriptions[0], payload_of(sample))

    per_thousand = 1000 / max(sent, 1)
    figures.update(
        {
            "ok": ok,
            "seconds": rounded(elapsed, 2),
            "msg_per_s": rounded(sent / elapsed),
            "adapter_cpu_s_per_1000": rounded(own * per_thousand, 3),
            "fake_cpu_s_per_1000": rounded(fake * per_thousand, 3),
            "adapter_cpu_share_of_one_core": rounded(own / elapsed, 2),
            "fake_cpu_share_of_one_core": rounded(fake / elapsed, 2),
            "encrypt_alone_us": rounded(alone["encrypt_us"]),
            "decrypt_alone_us": rounded(alone["decrypt_us"]),
            "payload_octets": len(payload_of(sample)),
            "vapid_jwts_signed": client.signed,
            "fake_vapid_verifications": stats.get("vapid_verifications", 0),
            "fake_by_status": stats["by_status"],
            "max_msg_per_s_on_2_cores_adapter_and_fake_only": rounded(
                2 / ((own + fake) / max(sent, 1))
            ),
        }
    )
    print(
        f"{sent} Web Push messages in {figures['seconds']} s: {figures['msg_per_s']} msg/s, "
        f"{ok} ok; CPU per 1,000: adapter {figures['adapter_cpu_s_per_1000']} s "
        f"(encryption alone {figures['encrypt_alone_us']} us/msg), fake "
        f"{figures['fake_cpu_s_per_1000']} s (decryption alone "
        f"{figures['decrypt_alone_us']} us/msg); JWTs signed {client.signed}",
        flush=True,
    )
    emit(figures)
    return 0 if ok == sent else 1


if __name__ == "__main__":
    sys.exit(main())
