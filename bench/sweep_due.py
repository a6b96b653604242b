"""The scheduled-message sweep when many messages fall due at once (a campaign's local time:
every target of one time zone shares one send_after): seeds N subscriptions, makes one
scheduled message each with COPY (message_send, as a campaign's fan-out does), moves their
send_after to one instant just past, and times messaging.delivery.pending_sweep handing them
over. The broker is left out (dispatch.enqueue counts the batches instead), so the figure is
the sweep's own database work.

    python bench/sweep_due.py [--n 20000] [--noise 0] [--db-name signal_bench] [--redis-db 11]

`--noise M` adds M more scheduled messages due hours later (the index the sweep reads holds
them too). Prints one JSON object as its last line: seconds, messages per second, batches,
the largest batch, and the queries the sweep ran.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import add_stack_arguments, config_from, emit, machine, setup_django  # noqa: E402

CHUNK = 5_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="messages due at once (20000)")
    parser.add_argument("--noise", type=int, default=0, help="messages due later (0)")
    add_stack_arguments(parser)
    args = parser.parse_args()
    config = config_from(args)
    setup_django(config)
    from bench.stack import fresh_database

    fresh_database(config)

    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from accounts.services import application_create
    from bench.seed import seed_subscriptions
    from messaging import dispatch
    from messaging.delivery import sweep
    from messaging.models import Message, Subscription
    from messaging.services.messages import Content, Delivery, message_send

    application = application_create(name="bench-sweep")
    seed_subscriptions(application, args.n + args.noise, processes=1)
    members = list(Subscription.objects.filter(application=application).values_list("pk", "type"))
    soon, later = timezone.now() + timedelta(hours=1), timezone.now() + timedelta(hours=9)
    content = Content(title="Good morning", body="Local time")
    for group, send_after in ((members[: args.n], soon), (members[args.n :], later)):
        for start in range(0, len(group), CHUNK):
            message_send(
                application=application,
                subscriptions=[
                    Subscription(pk=pk, type=type_) for pk, type_ in group[start : start + CHUNK]
                ],
                content=content,
                delivery=Delivery(send_after=send_after),
                return_messages=False,
            )
    due_at = timezone.now().replace(second=0, microsecond=0)
    Message.objects.filter(send_after=soon).update(send_after=due_at)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) messaging_message")

    batches: list[int] = []
    dispatch.enqueue = lambda queue, ids, countdown=None: batches.append(len(ids))
    dispatch.broker_lost_queued_tasks = lambda placed_before: False
    queries = []

    def counted(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counted):
        started = time.perf_counter()
        handed = sweep.pending_sweep()
        seconds = time.perf_counter() - started
    again = sweep.pending_sweep()
    figures = {
        "benchmark": "sweep_due",
        "ok": handed == args.n and again == 0,
        "n": args.n,
        "noise": args.noise,
        "handed_over": handed,
        "seconds": round(seconds, 3),
        "messages_per_second": round(handed / seconds) if seconds else None,
        "batches": len(batches),
        "largest_batch": max(batches, default=0),
        "queries": len(queries),
        "machine": machine(),
    }
    print(
        f"sweep: {handed} messages due at one instant handed over in {seconds:.2f} s "
        f"({len(batches)} batches, at most {figures['largest_batch']}); ok={figures['ok']}",
        flush=True,
    )
    emit(figures)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
