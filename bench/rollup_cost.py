"""What the delivery rollups add to a batch: messaging.delivery.rollups.add_batch for a
500-message batch (one application and channel, a tenth of the attempts failed with one of
two error codes), each in its own committed transaction as in the pipeline; the first batch
of the minute inserts the rows, later ones update them (ON CONFLICT).

    python bench/rollup_cost.py [--batches 400] [--size 500] [--db-name signal_bench_rollups]

Prints, as its last line, one JSON object: median and p95 milliseconds per add_batch, and the
part spent building the groups in Python (the rest is the statement's round trip).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchConfig, emit, machine, percentile, rounded, setup_django  # noqa: E402


def batch(application_id, size: int) -> tuple[list, dict]:
    messages, results = [], {}
    for index in range(size):
        failed = index % 10 == 0
        code = random.choice(("Unregistered", "UNAVAILABLE")) if failed else None
        message = SimpleNamespace(
            id=uuid.uuid4(), application_id=application_id, channel="iOSPush",
            status="failed" if failed else "successful", error_code=code or "",
        )  # fmt: skip
        messages.append(message)
        results[message.id] = SimpleNamespace(
            ok=not failed, error_code=code, latency_ms=random.lognormvariate(3.5, 0.6)
        )
    return messages, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--db-name", default="signal_bench_rollups", help="dropped first")
    parser.add_argument("--redis-db", type=int, default=11)
    args = parser.parse_args()
    config = BenchConfig(db_name=args.db_name, redis_db=args.redis_db)

    from bench.stack import fresh_database

    fresh_database(config)
    setup_django(config)

    from django.db import connection, transaction
    from django.utils import timezone

    from messaging.delivery import rollups

    application_id = uuid.uuid4()
    batches = [batch(application_id, args.size) for _ in range(args.batches)]
    totals, python = [], []
    for messages, results in batches:
        now = timezone.now()
        with transaction.atomic():
            # The batch's transaction has begun (the claim) when record_results adds to it.
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            started = time.perf_counter()
            rollups.add_batch(messages, results, now)
            totals.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        rollups.batch_groups(messages, results)
        python.append((time.perf_counter() - started) * 1000)
    emit(
        {
            "bench": "rollup_cost",
            "batch_size": args.size,
            "batches": args.batches,
            "p50_ms": rounded(percentile(totals, 0.5), 3),
            "p95_ms": rounded(percentile(totals, 0.95), 3),
            "python_p50_ms": rounded(percentile(python, 0.5), 3),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
