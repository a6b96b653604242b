"""Seed N subscriptions of one application with PostgreSQL COPY, half iOS, half Android, all
tagged {"plan": "gold"} in country KR, tokens encrypted as core.crypto does.

    python bench/seed.py --n 1000000 [--processes 2]

Standalone it seeds a fresh bench database (no workers) and prints, as its last line, one JSON
object: {"rows", "seconds", "rows_per_second", ...}. The other benches import seed_subscriptions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchConfig, emit, machine, setup_django  # noqa: E402

CHUNK = 20_000
# Above this many rows the encryption (about 15 us a token) is spread over a process pool.
PARALLEL_FROM = 100_000
TAGS = {"plan": "gold"}
COLUMNS = (
    "id, application_id, user_id, type, token, token_digest, enabled, disabled_reason, tags, "
    "language, country, timezone, device, last_active_at, created_at, updated_at, keys"
)
FCM_FILLER = "bench_" * 30


def ios_token(salt: int, index: int) -> str:
    """64 hex digits; the leading "abcd" is none of the fake's special prefixes."""
    return f"abcd{salt:012x}{index:048x}"


def android_token(salt: int, index: int) -> str:
    """An FCM-like registration token (152 characters) no fake prefix matches."""
    return f"c{salt:012x}{index:010d}:APA91b{FCM_FILLER}"[:152]


def email_address(salt: int, index: int) -> str:
    """An address the fake SMTP relay accepts (no special local-part prefix)."""
    return f"u{salt:012x}{index:010d}@bench.example.com"


def phone_number(salt: int, index: int) -> str:
    """A US number in +1 415 555 xxxx style that none of the fake Twilio's ranges matches."""
    return f"+1415{(salt + index) % 10**7:07d}"


def kakao_number(salt: int, index: int) -> str:
    """A Korean mobile number (+82 10 5xxx xxxx to 9xxx xxxx) that the fake KakaoTalk dealer
    delivers (none of its not-a-user, blocked, slow or failing ranges)."""
    return f"+8210{50_000_000 + (salt + index) % 50_000_000:08d}"


# channel -> how the index-th subscription's (type, token) is made; "push" alternates iOS and
# Android, as every other bench does.
def _push(salt: int, index: int) -> tuple[str, str]:
    if index % 2:
        return "AndroidPush", android_token(salt, index)
    return "iOSPush", ios_token(salt, index)


TOKENS = {
    "push": _push,
    "Email": lambda salt, index: ("Email", email_address(salt, index)),
    "SMS": lambda salt, index: ("SMS", phone_number(salt, index)),
    "KakaoTalk": lambda salt, index: ("KakaoTalk", kakao_number(salt, index)),
    # An app installation's id: the in-app inbox is written locally, no provider is called.
    "InAppMessage": lambda salt, index: ("InAppMessage", f"install-{salt:012x}-{index:010d}"),
}


def _chunk_rows(job: tuple) -> bytes:
    """COPY text rows for subscriptions start..stop (runs in a pool process too)."""
    from core import crypto
    from messaging.ids import uuid7

    application_id, salt, start, stop, stamp, first_ms, channel, browsers = job
    tags = json.dumps(TAGS)
    token_of = TOKENS.get(channel)
    lines = []
    for index in range(start, stop):
        keys = ""  # EncryptedJSONField's empty value
        if browsers is not None:  # WebPush: the fake push service's subscriptions
            kind, (token, browser_keys) = "WebPush", browsers[index - start]
            keys = crypto.encrypt(json.dumps(browser_keys, sort_keys=True))
        else:
            kind, token = token_of(salt, index)
        # Ids as the model gives them (time-ordered), as if registered one per millisecond:
        # the table's order is its ids' order, as for subscriptions registered over time.
        # Tokens, digests, JSON and timestamps hold no tab, newline or backslash: no escaping.
        lines.append(
            f"{uuid7(first_ms + index)}\t{application_id}\t\\N\t{kind}\t{crypto.encrypt(token)}\t"
            f"{crypto.token_digest(kind, token)}\tt\t\t{tags}\tko\tKR\t\t{{}}\t\\N\t"
            f"{stamp}\t{stamp}\t{keys}\n"
        )
    return "".join(lines).encode()


def _jobs(
    application_id, n: int, salt: int, channel: str = "push", browsers: list | None = None
) -> list[tuple]:
    now = datetime.now(UTC)
    first_ms = int(now.timestamp() * 1000) - n
    return [
        (
            str(application_id), salt, start, min(start + CHUNK, n), now.isoformat(), first_ms,
            channel, browsers[start : start + CHUNK] if browsers is not None else None,
        )
        for start in range(0, n, CHUNK)
    ]  # fmt: skip


def seed_subscriptions(
    application,
    n: int,
    *,
    processes: int | None = None,
    channel: str = "push",
    browsers: list[tuple[str, dict]] | None = None,
) -> dict:
    """Inserts n subscriptions of `application` with COPY; returns the timings. `channel`:
    "push" (half iOS, half Android), "Email", "SMS", "KakaoTalk", "InAppMessage", or "WebPush"
    with `browsers`, n (endpoint, keys) pairs of the fake push service."""
    from django.db import connection

    salt = random.getrandbits(48)
    jobs = _jobs(application.pk, n, salt, channel, browsers)
    if processes is None:
        processes = 2 if n >= PARALLEL_FROM else 1
    started = time.perf_counter()
    sql = f"COPY messaging_subscription ({COLUMNS}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        if processes > 1:
            # spawn, not fork: the bench process has threads (samplers, the outbox), and a
            # child forked while one of them held a lock hangs. The children read the keys
            # from the environment the bench set, and encrypt in parallel while this process
            # streams finished chunks to PostgreSQL.
            context = multiprocessing.get_context("spawn")
            with context.Pool(processes) as pool:
                for data in pool.imap(_chunk_rows, jobs):
                    copy.write(data)
        else:
            for job in jobs:
                copy.write(_chunk_rows(job))
    copied = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_subscription")
    seconds = time.perf_counter() - started
    return {
        "rows": n,
        "seconds": round(seconds, 2),
        "copy_seconds": round(copied, 2),
        "rows_per_second": round(n / seconds) if seconds else None,
        "processes": processes,
    }


def create_application(fakes, name: str):
    """An application whose credentials are the fake providers' (every channel), and a server
    key."""
    from accounts.models import ApiKey
    from accounts.services import api_key_create, application_create, channel_credentials_set

    application = application_create(
        name=name,
        credentials={
            "iOSPush": dict(fakes.apns_credentials().values),
            "AndroidPush": dict(fakes.fcm_credentials().values),
        },
    )
    for channel, values in (
        ("Email", dict(fakes.email_credentials().values)),
        ("SMS", dict(fakes.sms_credentials().values)),
        ("KakaoTalk", dict(fakes.kakao_credentials(fallback=True).values)),
        ("WebPush", {"subject": "mailto:bench@signal.test"}),  # VAPID keys generated
    ):
        channel_credentials_set(application=application, channel=channel, values=values)
    kakao_template_sync(fakes, application)
    key = api_key_create(application=application, scope=ApiKey.Scope.SERVER)
    return application, key.raw


# The approved AlimTalk template the KakaoTalk benches send (registered at the fake dealer).
KAKAO_TEMPLATE_CODE = "BENCH_SALE"
KAKAO_TEMPLATE_TEXT = "#{name}님, 이번 주 일요일까지 20% 할인! #{item}을(를) 확인하세요."


def kakao_template_sync(fakes, application) -> None:
    """Registers the bench's AlimTalk template at the fake dealer and reads the dealer's list
    into the application, as `sync_kakao_templates` does (through the real adapter)."""
    from django.conf import settings

    from adapters import registry
    from templates_app.kakao import kakao_templates_sync

    fakes.kakao_template(KAKAO_TEMPLATE_CODE, KAKAO_TEMPLATE_TEXT)
    if fakes.kakao_endpoint != settings.KAKAO_ENDPOINT:
        settings.KAKAO_ENDPOINT = fakes.kakao_endpoint
        registry.reset_adapters()
    kakao_templates_sync(application=application)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=None, help="encrypting processes")
    parser.add_argument("--db-name", default="signal_bench")
    args = parser.parse_args()

    from bench.stack import fresh_database

    config = BenchConfig(db_name=args.db_name)
    fresh_database(config)
    setup_django(config)
    from accounts.services import application_create

    application = application_create(name="seed-bench")
    print(f"seeding {args.n} subscriptions into {config.db_name} ...", flush=True)
    figures = seed_subscriptions(application, args.n, processes=args.processes)
    print(
        f"{figures['rows']} rows in {figures['seconds']} s "
        f"({figures['rows_per_second']:,} rows/s, {figures['processes']} encrypting processes)"
    )
    emit({"benchmark": "seed", "ok": True, **figures, "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
