"""Fault injection: a campaign through the real stack while one fault at a time hits it.

    python bench/faults.py [--broker redis|rabbitmq|both] [--n 50000] \
        [--scenario worker-kill,broker-restart,db-terminate,pg-restart] [--fault-at 0.4]

Everything runs on private servers of the run's own (bench/servers.py: a PostgreSQL cluster, a
Redis server, a RabbitMQ node), so a fault never touches the machine's services. The stack is
what `make run` runs: gunicorn, one Celery worker (`-c 2`, gossip, mingle and heartbeats on),
beat, the fake providers; a worker that exits is started again, as `make run` and compose do.
While the campaign runs, a probe calls the API (a single-message POST and a campaign GET, 20
requests/s) and counts its answers.

Scenarios:
  worker-kill     SIGKILL a worker pool child three times, 2 s apart
  broker-restart  the broker killed, down 5 s, back with its data lost (Redis keeps nothing;
                  the RabbitMQ node's data directory is wiped)
  broker-bounce   RabbitMQ only: stopped cleanly, down 5 s, back with its durable queues
  db-terminate    every PostgreSQL backend of the database terminated
  pg-restart      PostgreSQL shut down (fast), down 5 s, started again

Per scenario it prints, and puts in the last line's JSON: messages lost (never terminal, or never
created), sent twice (provider requests beyond the successful messages), the bound on duplicates
(the batches in flight: faults x pool size x MESSAGE_BATCH_SIZE), seconds from the service's
return to completion, the API's 5xx count (a 503 with Retry-After, the answer while the
database is unreachable, is counted apart), and how often the worker was restarted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchConfig, base_env, emit, machine, process_tree  # noqa: E402
from bench.servers import PrivatePostgres, PrivateRabbitMQ, PrivateRedis  # noqa: E402

SCENARIOS = ("worker-kill", "broker-restart", "broker-bounce", "db-terminate", "pg-restart")
DOWN_SECONDS = 5.0
CONCURRENCY = 2
PROBE_PER_SECOND = 20


# --- Reading the database through faults -------------------------------------------------------


def db(read, default=None):
    """Runs read() on the bench's own connection; a connection the fault broke is dropped and
    the read tried again next time (returns `default` meanwhile)."""
    from django.db import DatabaseError, connection

    try:
        return read()
    except DatabaseError:
        with contextlib.suppress(Exception):
            connection.close()
        return default


def run_state(campaign_id: str) -> dict | None:
    from campaigns.models import CampaignRun

    run = CampaignRun.objects.filter(campaign_id=campaign_id).first()
    if run is None:
        return None
    return {
        "status": run.status,
        "targeted": run.targeted,
        "pending": run.pending,
        "successful": run.successful,
        "failed": run.failed,
        "fanout_done": run.fanout_done,
        "id": str(run.pk),
    }


def message_counts(ids: list[str]) -> dict:
    from django.db.models import Count, Q

    from messaging.models import Message

    return Message.objects.filter(pk__in=ids).aggregate(
        total=Count("pk"),
        successful=Count("pk", filter=Q(status="successful")),
        pending=Count("pk", filter=Q(status="pending")),
    )


def run_message_counts(run_id: str) -> dict:
    from django.db.models import Count, Q

    from messaging.models import Message

    return Message.objects.filter(campaign_run_id=run_id).aggregate(
        total=Count("pk"),
        distinct_subscriptions=Count("subscription_id", distinct=True),
        successful=Count("pk", filter=Q(status="successful")),
        failed=Count("pk", filter=Q(status="failed")),
        pending=Count("pk", filter=Q(status="pending")),
    )


# --- The API probe -----------------------------------------------------------------------------


class Probe(threading.Thread):
    """Calls the API at a steady rate while the campaign runs: POST /messages to one
    subscription and GET /campaigns/{id}, alternately. Counts every answer by status."""

    def __init__(self, web_url: str, key: str, subscription_id: str, campaign_id: str):
        super().__init__(name="probe", daemon=True)
        self.web_url, self.key = web_url, key
        self.subscription_id, self.campaign_id = subscription_id, campaign_id
        self.statuses: dict[str, int] = {}
        self.accepted: list[str] = []
        self.errors_5xx: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (our own loopback server)
            self.web_url + path,
            data=data,
            method=method,
            headers={"X-API-Key": self.key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"raw": raw[:200].decode(errors="replace")}
            if exc.code == 503 and exc.headers.get("Retry-After"):
                body["retry_after"] = exc.headers["Retry-After"]
            return exc.code, body
        except OSError as exc:
            return 0, {"error": str(exc)}

    def run(self) -> None:
        interval = 1.0 / PROBE_PER_SECOND
        turn = 0
        while not self._halt.wait(interval):
            turn += 1
            if turn % 2:
                status, body = self._call(
                    "POST",
                    "/api/v1/messages",
                    {"subscription_id": self.subscription_id, "title": "probe", "body": "b"},
                )
                if status == 202:
                    self.accepted.extend(m["id"] for m in body["messages"])
            else:
                status, body = self._call("GET", f"/api/v1/campaigns/{self.campaign_id}")
            # A 503 with Retry-After while the database is down is the API's answer by design.
            if status == 503 and body.get("retry_after"):
                status = "503+Retry-After"
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if isinstance(status, int) and status >= 500:
                self.errors_5xx.append(f"{status} {json.dumps(body)[:200]}")

    @property
    def count_5xx(self) -> int:
        """Server errors other than a 503 with Retry-After."""
        return len(self.errors_5xx)


# --- Faults ------------------------------------------------------------------------------------


def pool_children(stack) -> list[int]:
    return [pid for w in stack.workers for pid in process_tree(w.pid) if pid != w.pid]


def kill_pool_child(stack) -> int:
    children = pool_children(stack)
    if not children:
        return 0
    os.kill(children[0], signal.SIGKILL)
    return 1


def terminate_backends(config: BenchConfig) -> int:
    import psycopg

    with psycopg.connect(
        host=config.db_host, port=config.db_port, user=config.db_user, dbname="postgres",
        autocommit=True,
    ) as connection:  # fmt: skip
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [config.db_name],
        ).fetchall()
    return len(rows)


def inject(scenario: str, stack, servers: dict, config: BenchConfig, supervise) -> dict:
    """Injects the scenario's fault; returns what was done and when the service was back."""
    if scenario == "worker-kill":
        killed = 0
        for _ in range(3):
            killed += kill_pool_child(stack)
            supervise(2.0)
        return {"faults": killed, "returned_at": time.monotonic()}
    if scenario == "broker-restart":
        back = servers["broker"].restart(down_seconds=DOWN_SECONDS, lose_data=True)
        return {"faults": 1, "returned_at": back}
    if scenario == "broker-bounce":
        back = servers["broker"].restart(down_seconds=DOWN_SECONDS, lose_data=False)
        return {"faults": 1, "returned_at": back}
    if scenario == "db-terminate":
        terminated = terminate_backends(config)
        return {"faults": 1, "backends_terminated": terminated, "returned_at": time.monotonic()}
    if scenario == "pg-restart":
        back = servers["postgres"].restart(down_seconds=DOWN_SECONDS)
        return {"faults": 1, "returned_at": back}
    raise ValueError(scenario)


# --- One scenario ------------------------------------------------------------------------------


def run_scenario(scenario: str, broker: str, servers: dict, args) -> dict:
    from bench.seed import create_application, seed_subscriptions
    from bench.stack import running_stack
    from messaging.services.subscriptions import SYSTEM, subscription_register

    config = BenchConfig(
        db_name="signal_faults",
        db_port=servers["postgres"].port,
        redis_port=servers["redis"].port,
        redis_db=0,
        broker_url=servers["broker"].url,
    )
    print(f"\n== {scenario} on {broker} ==", flush=True)
    with running_stack(
        config, workers=1, concurrency=CONCURRENCY, web_workers=2, beat=True,
        worker_options=[], keep_logs=args.keep_logs,
    ) as stack:  # fmt: skip
        from django.db import connection

        connection.close()  # the database was made anew under this process's connection
        application, key = create_application(stack.fakes, f"faults-{scenario}")
        seed_subscriptions(application, args.n)
        probe_sub, _ = subscription_register(
            application=application, actor=SYSTEM, type="iOSPush",
            token="ab" * 32, tags={"plan": "probe"},
        )  # fmt: skip
        status, body = _post(stack, key, "/api/v1/campaigns", {
            "name": "faults", "title": "Summer sale", "body": "Everything 20% off",
            "targeting_criteria": {"tags": {"plan": "gold"}},
        })  # fmt: skip
        if status != 201:
            raise RuntimeError(f"POST /campaigns answered {status}: {body}")
        campaign_id = body["id"]
        stack.fakes.reset()
        probe = Probe(stack.web_url, key, str(probe_sub.pk), campaign_id)
        status, body = _post(stack, key, f"/api/v1/campaigns/{campaign_id}/execute")
        if status != 202:
            raise RuntimeError(f"execute answered {status}: {body}")
        started = time.monotonic()
        probe.start()
        exits: list[str] = []

        def supervise(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                restarted = stack.restart_dead_workers()
                if restarted:
                    exits.extend(restarted)
                    print(f"  worker exited: restarted {restarted}", flush=True)
                time.sleep(0.2)

        # Until the fault point: the share of the audience whose message is terminal.
        state = None
        while time.monotonic() - started < args.timeout:
            state = db(lambda: run_state(campaign_id), state)
            done = (state["successful"] + state["failed"]) if state else 0
            if done >= args.fault_at * args.n:
                break
            supervise(0.2)
        at_fault = dict(state or {})
        print(f"  fault at {time.monotonic() - started:.1f} s: {at_fault}", flush=True)
        fault = inject(scenario, stack, servers, config, supervise)
        returned_at = fault.pop("returned_at")
        # Then until the run is complete and every probe message is terminal.
        completed_at = None
        next_report = 0.0
        while time.monotonic() - returned_at < args.timeout:
            supervise(0.5)
            state = db(lambda: run_state(campaign_id), state)
            probes = db(lambda: message_counts(probe.accepted[:]), None)
            if time.monotonic() >= next_report:
                print(f"  {time.monotonic() - started:6.1f} s: {state}", flush=True)
                next_report = time.monotonic() + 5
            if state and state["status"] == "completed" and probes and probes["pending"] == 0:
                completed_at = time.monotonic()
                break
        probe.stop()
        time.sleep(1.0)  # answers in flight reach the fakes' counters
        figures = _figures(stack, state, probe, campaign_id, args.n)
    recovery = round(completed_at - returned_at, 1) if completed_at else None
    from django.conf import settings

    # The stack's workers take MESSAGE_BATCH_SIZE from the same environment as this process.
    bound = fault["faults"] * CONCURRENCY * settings.MESSAGE_BATCH_SIZE
    result = {
        "scenario": scenario,
        "broker": broker,
        "n": args.n,
        **fault,
        **figures,
        "duplicates_bound": bound,
        "seconds_from_return_to_completion": recovery,
        "total_seconds": round((completed_at or time.monotonic()) - started, 1),
        "worker_restarts": len(exits),
        "at_fault": at_fault,
    }
    result["ok"] = bool(
        completed_at
        and result["lost"] == 0
        and result["api_5xx"] == 0
        and result["sent_twice"] is not None
        and result["sent_twice"] <= bound
        and recovery is not None
        and recovery <= 60
    )
    print(
        f"  {scenario}/{broker}: lost {result['lost']}, sent twice {result['sent_twice']} "
        f"(bound {bound}), return->complete {recovery} s, API 5xx {result['api_5xx']}, "
        f"worker restarts {len(exits)}; ok={result['ok']}",
        flush=True,
    )
    return result


def _post(stack, key: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    from bench.common import http_json

    return http_json("POST", stack.web_url + path, key, body)


def _figures(stack, state, probe: Probe, campaign_id: str, n: int) -> dict:
    run_id = (state or {}).get("id")
    counts = db(lambda: run_message_counts(run_id), {}) if run_id else {}
    probes = db(lambda: message_counts(probe.accepted[:]), {}) or {}
    delivered = (counts.get("successful") or 0) + (probes.get("successful") or 0)
    try:
        answered = sum(
            stats.get("by_status", {}).get("200", 0)
            for stats in (stack.fakes.apns_stats(), stack.fakes.fcm_stats())
        )
    except Exception:  # the counters matter less than the rest
        answered = None
    never_created = n - (counts.get("distinct_subscriptions") or 0)
    not_terminal = (counts.get("pending") or 0) + (probes.get("pending") or 0)
    return {
        "lost": never_created + not_terminal + (len(probe.accepted) - (probes.get("total") or 0)),
        "never_created": never_created,
        "not_terminal": not_terminal,
        "campaign_messages": counts,
        "probe_messages_accepted": len(probe.accepted),
        "provider_requests_ok": answered,
        "sent_twice": (answered - delivered) if answered is not None else None,
        "api_5xx": probe.count_5xx,
        "api_503_with_retry_after": probe.statuses.get("503+Retry-After", 0),
        "api_statuses": probe.statuses,
        "api_5xx_samples": probe.errors_5xx[:5],
    }


# --- Main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="both", choices=("redis", "rabbitmq", "both"))
    parser.add_argument("--n", type=int, default=50_000, help="audience size (50000)")
    parser.add_argument("--scenario", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--fault-at", type=float, default=0.4, help="share delivered (0.4)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per phase")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    scenarios = [s for s in args.scenario.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    brokers = ("redis", "rabbitmq") if args.broker == "both" else (args.broker,)

    results = []
    with PrivatePostgres() as postgres, PrivateRedis() as redis_server:
        # This process reads the database throughout; Django is set up once, on the cluster.
        first = BenchConfig(
            db_name="signal_faults", db_port=postgres.port, redis_port=redis_server.port,
            redis_db=0,
        )  # fmt: skip
        os.environ.update(base_env(first))
        import django

        django.setup()
        for broker in brokers:
            for scenario in scenarios:
                if scenario == "broker-bounce" and broker != "rabbitmq":
                    continue  # Redis keeps nothing across a restart: broker-restart covers it
                with contextlib.ExitStack() as stack:
                    if broker == "rabbitmq":
                        broker_server = stack.enter_context(PrivateRabbitMQ())
                    else:
                        broker_server = redis_server
                    servers = {"postgres": postgres, "redis": redis_server, "broker": broker_server}
                    results.append(run_scenario(scenario, broker, servers, args))
    figures = {
        "benchmark": "faults",
        "ok": all(r["ok"] for r in results),
        "n": args.n,
        "results": results,
        "machine": machine(),
    }
    print("\nscenario        broker    lost  twice (bound)  return->done  5xx  503  restarts")
    for r in results:
        print(
            f"{r['scenario']:<15} {r['broker']:<9} {r['lost']:>4}  {r['sent_twice']!s:>5} "
            f"({r['duplicates_bound']!s:>5})  {r['seconds_from_return_to_completion']!s:>10} s"
            f"  {r['api_5xx']:>3}  {r['api_503_with_retry_after']:>3}  {r['worker_restarts']:>8}",
            flush=True,
        )
    emit(figures)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
