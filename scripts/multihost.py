#!/usr/bin/env python3
"""Several worker hosts sharing one PostgreSQL (through PgBouncer in transaction mode) and one
broker, on this machine: three Linux network namespaces stand for three hosts, each with its
own Celery worker, on a bridge to the root namespace where PgBouncer, the broker, Redis and
the fake providers listen. A push campaign of N subscriptions runs across the three; when
about 30 % of it is sent, host 3's network is cut (its link goes down, its processes keep
running) and the other two must finish the run: every subscription gets exactly one message.

    .venv/bin/python scripts/multihost.py [--n 6000] [--broker redis|rabbitmq] [--keep-logs]

Needs root, iproute2 (`ip netns`), pgbouncer (scripts/ensure_pgbouncer.sh), redis-server,
and for --broker rabbitmq socat and the machine's RabbitMQ on 127.0.0.1:5672 (rabbitmqctl,
for a virtual host of the run's own). Where one is missing it prints one line and exits
with 77 (skipped). It tears down everything it made (namespaces, bridge, processes, the
RabbitMQ virtual host), also on an error, SIGINT or SIGTERM.

Prints progress, then as its last line one JSON object: "ok", the counts per subscription,
statuses, what the fake providers received (missing tokens, duplicates), which host sent how
many, the workers each host showed before the cut, the elapsed time and the takeover time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import BenchConfig, base_env, emit  # noqa: E402
from bench.stack import (  # noqa: E402
    QUEUES,
    QUIET_WORKER,
    Service,
    fresh_database,
    providers_env,
    spawn,
    stop_all,
)

SKIP = 77  # automake's "skipped"
INNER = "sig0"  # each namespace's end of its veth pair
SLOTS = 10  # runs side by side take slots 0..9: names and a /24 of their own
# The slot's names and addresses (use_slot): the bridge, the /24, the gateway (the bridge's
# address, where the shared services listen), and per host (name, namespace, veth, address).
BRIDGE = NET = GATEWAY = ""
HOSTS: list[tuple[str, str, str, str]] = []


def use_slot(slot: int) -> None:
    global BRIDGE, NET, GATEWAY, HOSTS
    BRIDGE, NET = f"sigbr{slot}", f"10.231.{slot}"
    GATEWAY = f"{NET}.1"
    HOSTS = [(f"h{k}", f"sig{slot}-h{k}", f"sigv{slot}-h{k}", f"{NET}.1{k}") for k in (1, 2, 3)]


use_slot(0)
CUT = "h3"
RABBITMQ = ("127.0.0.1", 5672)

# Short timeouts, so the cut host's work is taken over within seconds (docs/scaling.md says
# what a real deployment should choose instead and why).
TAKEOVER_ENV = {
    "MESSAGE_STALE_AFTER_SECONDS": "15",
    "MESSAGE_SWEEP_INTERVAL_SECONDS": "3",
    "MESSAGE_SWEEP_OVERLAP_SECONDS": "5",
    "CAMPAIGN_STALL_SECONDS": "15",
    "CAMPAIGN_RESUME_INTERVAL_SECONDS": "5",
    "CELERY_VISIBILITY_TIMEOUT": "30",
    # Small tasks, so the work spreads over the three hosts and a cut strands little of it.
    "MESSAGE_BATCH_SIZE": "50",
    "CAMPAIGN_BATCH_SIZE": "200",
    "CELERY_WORKER_PREFETCH_MULTIPLIER": "2",
}
# PgBouncer: a client that vanished (no answer to keepalive probes: 5 s idle, then 3 probes
# 2 s apart) is dropped, and with it the server connection of its open transaction, whose
# row locks PostgreSQL then releases. The database's own idle-in-transaction timeout is the
# backstop (the workers cannot send it as a startup parameter through PgBouncer).
KEEPALIVE = {"tcp_keepalive": 1, "tcp_keepidle": 5, "tcp_keepintvl": 2, "tcp_keepcnt": 3}
TCP_USER_TIMEOUT_MS = 12_000  # unacknowledged data to a vanished client: given up after this
IDLE_IN_TRANSACTION_BACKSTOP = "60s"


def say(text: str) -> None:
    print(text, flush=True)


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


class Skip(Exception):
    """A prerequisite is missing: the run is skipped, not failed."""


# --- Prerequisites ------------------------------------------------------------------------------


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )


def answers(address: tuple[str, int], timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def preflight(broker: str) -> None:
    """Raises Skip naming the first missing prerequisite; tries a scratch namespace for real."""
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces, a bridge)")
    if not shutil.which("ip"):
        raise Skip("needs iproute2's `ip`")
    if not pgbouncer_binary():
        raise Skip("needs pgbouncer (scripts/ensure_pgbouncer.sh installs Debian's)")
    if not shutil.which("redis-server"):
        raise Skip("needs redis-server")
    if broker == "rabbitmq":
        if not shutil.which("socat"):
            raise Skip("needs socat for --broker rabbitmq")
        if not shutil.which("rabbitmqctl"):
            raise Skip("needs rabbitmqctl for --broker rabbitmq")
        if not answers(RABBITMQ):
            raise Skip("needs RabbitMQ on 127.0.0.1:5672 for --broker rabbitmq")
    scratch = f"sig-probe-{os.getpid()}"
    result = run(["ip", "netns", "add", scratch], check=False)
    if result.returncode != 0:
        raise Skip(f"cannot create a network namespace: {result.stderr.strip()}")
    run(["ip", "netns", "del", scratch], check=False)


def collisions() -> list[str]:
    """Names or addresses of ours that already exist on this machine."""
    found = []
    namespaces = run(["ip", "netns", "list"]).stdout.split()
    found += [ns for _h, ns, _v, _a in HOSTS if ns in namespaces]
    links = run(["ip", "-o", "link", "show"]).stdout
    found += [n for n in [BRIDGE] + [v for *_x, v, _a in HOSTS] if re.search(rf": {n}[@:]", links)]
    addresses = run(["ip", "-o", "-4", "addr", "show"]).stdout
    routes = run(["ip", "-4", "route", "show"]).stdout
    if f" {NET}." in addresses or f"{NET}." in routes:
        found.append(f"{NET}.0/24")
    return found


# --- The network --------------------------------------------------------------------------------


@dataclass
class Network:
    """The bridge in the root namespace and one namespace per host, each joined to the bridge
    by a veth pair; `down` removes what `up` made (also what it made before failing)."""

    namespaces: list[str] = field(default_factory=list)
    bridge: bool = False

    def up(self) -> None:
        """Takes the first slot whose names and addresses nobody uses (the bridge's creation
        decides between two runs that chose the same one)."""
        for slot in range(SLOTS):
            use_slot(slot)
            if collisions():
                continue
            if run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=False).returncode == 0:
                break
        else:
            raise RuntimeError(f"every slot's names or addresses (10.231.0-{SLOTS - 1}.0/24) "
                               "are in use on this machine")  # fmt: skip
        self.bridge = True
        run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        for _host, ns, veth, address in HOSTS:
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", INNER, "netns", ns])
            run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
            run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", INNER])
            run(["ip", "-n", ns, "link", "set", INNER, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def cut(self, ns: str) -> None:
        """The host's network goes away; its processes keep running."""
        run(["ip", "netns", "exec", ns, "ip", "link", "set", INNER, "down"])

    def down(self) -> None:
        for _host, ns, veth, _address in reversed(HOSTS):
            if ns in self.namespaces:
                # The pair explicitly: a namespace outlives its name while sockets of the cut
                # host still wait on it, and its veth pair would stay with it.
                run(["ip", "link", "del", veth], check=False)
                run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        if self.bridge:
            run(["ip", "link", "del", BRIDGE], check=False)
            self.bridge = False


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, services: list[Service]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited:\n{service.log_tail()}")
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout} s")


# --- The shared services in the root namespace --------------------------------------------------


def pgbouncer_config(work: Path, db_name: str, port: int) -> Path:
    lines = [
        "[databases]",
        f"{db_name} = host=127.0.0.1 port=5432 dbname={db_name} user=postgres",
        "[pgbouncer]",
        f"listen_addr = {GATEWAY}",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = any",
        "admin_users = postgres",
        "pool_mode = transaction",
        "max_client_conn = 200",
        "default_pool_size = 20",
        "server_reset_query =",
        "ignore_startup_parameters = extra_float_digits",
        *(f"{name} = {value}" for name, value in KEEPALIVE.items()),
        f"tcp_user_timeout = {TCP_USER_TIMEOUT_MS}",
        f"logfile = {work / 'pgbouncer' / 'pgbouncer.log'}",
        f"pidfile = {work / 'pgbouncer' / 'pgbouncer.pid'}",
        "log_connections = 1",
        "log_disconnections = 1",
    ]
    path = work / "pgbouncer" / "pgbouncer.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def pgbouncer_clients(port: int, db_name: str, state: str | None = None) -> dict[str, int]:
    """PgBouncer's client connections to the database (in `state` only: "active" is linked
    to a server connection, inside a transaction), by client address (its admin console, in
    the simple query protocol)."""
    import psycopg

    with psycopg.connect(
        host=GATEWAY,
        port=port,
        user="postgres",
        dbname="pgbouncer",
        autocommit=True,
        connect_timeout=3,
        cursor_factory=psycopg.ClientCursor,
    ) as connection:
        cursor = connection.execute("SHOW CLIENTS")
        names = [c.name for c in cursor.description]
        counts: dict[str, int] = {}
        for row in cursor.fetchall():
            record = dict(zip(names, row, strict=True))
            if record.get("database") == db_name and state in (None, record.get("state")):
                address = str(record.get("addr"))
                counts[address] = counts.get(address, 0) + 1
        return counts


@contextlib.contextmanager
def rabbitmq_vhost(name: str):
    """A virtual host of the run's own on the machine's RabbitMQ (no other test's queues),
    deleted at the end."""
    run(["rabbitmqctl", "-q", "add_vhost", name])
    try:
        run(["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
        yield
    finally:
        run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)


# --- The run ------------------------------------------------------------------------------------


def worker_command(host: str, ns: str) -> list[str]:
    return [
        "ip", "netns", "exec", ns,
        sys.executable, "-m", "celery", "-A", "signal_project", "worker",
        "-Q", QUEUES, "-c", "2", "-n", f"{host}@%h", "-l", "warning",
        "--include", "bench.naive",  # writes the ready file
        *QUIET_WORKER,
    ]  # fmt: skip


def beat_command(ns: str, work: Path) -> list[str]:
    return [
        "ip", "netns", "exec", ns,
        sys.executable, "-m", "celery", "-A", "signal_project", "beat", "-l", "warning",
        "--pidfile", str(work / "beat.pid"),
    ]  # fmt: skip


def host_of(worker_hostname: str) -> str:
    return worker_hostname.split("@", 1)[0]


def provider_figures(fakes, expected: set[str]) -> dict:
    """What APNs and FCM accepted: tokens missing, duplicates, tokens not ours; by host."""
    received: dict[str, int] = {}
    peers: dict[str, int] = {}
    for stats in (fakes.apns_stats(), fakes.fcm_stats()):
        for token, count in stats.get("tokens", {}).items():
            received[token] = received.get(token, 0) + count
        for peer, count in stats.get("peers", {}).items():
            peers[peer] = peers.get(peer, 0) + count
    duplicates = {t: c for t, c in received.items() if c > 1}
    return {
        "accepted": sum(received.values()),
        "distinct_tokens": len(received),
        "missing": len(expected - received.keys()),
        "unexpected": len(received.keys() - expected),
        "duplicates": sum(c - 1 for c in duplicates.values()),
        "tokens_sent_twice_or_more": len(duplicates),
        "by_host": sent_by_host(peers),
    }


def sent_by_host(peers: dict[str, int]) -> dict[str, int]:
    address_host = {address: host for host, _ns, _v, address in HOSTS}
    return {address_host.get(peer, peer or "unknown"): count for peer, count in peers.items()}


def peers_now(fakes) -> dict[str, int]:
    peers: dict[str, int] = {}
    for stats in (fakes.apns_stats(), fakes.fcm_stats()):
        for peer, count in stats.get("peers", {}).items():
            peers[peer] = peers.get(peer, 0) + count
    return sent_by_host(peers)


def message_checks(run_id, n: int) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT subscription_id) FROM messaging_message"
            " WHERE campaign_run_id = %s",
            [run_id],
        )
        messages, subscriptions = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM (SELECT subscription_id FROM messaging_message"
            " WHERE campaign_run_id = %s GROUP BY subscription_id HAVING count(*) > 1) AS d",
            [run_id],
        )
        (more_than_one,) = cursor.fetchone()
        cursor.execute(
            "SELECT status, coalesce(error_code, ''), count(*) FROM messaging_message"
            " WHERE campaign_run_id = %s GROUP BY 1, 2",
            [run_id],
        )
        statuses: dict[str, int] = {}
        not_successful: dict[str, int] = {}
        for status, error, count in cursor.fetchall():
            statuses[status] = statuses.get(status, 0) + count
            if status != "successful":
                not_successful[f"{status}:{error or '-'}"] = count
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'msg_one_per_run_and_subscription'"
        )
        index = cursor.fetchone()
    return {
        "messages": messages,
        "subscriptions_messaged": subscriptions,
        "subscriptions_without_message": n - subscriptions,
        "subscriptions_with_more_than_one": more_than_one,
        "unique_index": bool(index and "UNIQUE" in index[0]),
        "statuses": statuses,
        "not_successful": not_successful,
    }


def pending_created_before(run_id, moment) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM messaging_message WHERE campaign_run_id = %s"
            " AND status = 'pending' AND created_at <= %s",
            [run_id, moment],
        )
        return cursor.fetchone()[0]


def campaign_start(application, n: int, fanout_seconds: float):
    from campaigns.services import campaign_create, campaign_execute
    from campaigns.targeting import criteria_clean

    campaign = campaign_create(
        application=application,
        name="multihost",
        title="Summer sale",
        body="Everything 20% off until Sunday. Have a look!",
        targeting_criteria=criteria_clean({"tags": {"plan": "gold"}}),
        # The fan-out is spread over `fanout_seconds`, so the cut lands in the middle of it.
        throttle_per_minute=max(int(n * 60 / fanout_seconds), 1) if fanout_seconds else None,
    )
    return campaign_execute(campaign=campaign, actor="multihost")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="push subscriptions (6000)")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    parser.add_argument("--cut-at", type=float, default=0.3, help="share successful (0.3)")
    parser.add_argument(
        "--fanout-seconds", type=float, default=0.0, help="a throttle that spreads the "
        "campaign's fan-out over this long (0: none, the hosts send as fast as they can)"
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds after the cut")
    parser.add_argument("--db-name", default="signal_mh_multihost", help="dropped first")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    try:
        preflight(args.broker)
    except Skip as exc:
        print(f"SKIP: scripts/multihost.py {exc}", flush=True)
        return SKIP
    # SIGTERM unwinds like Ctrl-C, so every finally below runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="signal-multihost-"))
    # PgBouncer refuses to run as root: it runs as `postgres` (or `nobody`), in a directory
    # of its own that it may write.
    server_user = pwd.getpwnam("postgres") if _user_exists("postgres") else pwd.getpwnam("nobody")
    (work / "pgbouncer").mkdir()
    os.chown(work / "pgbouncer", server_user.pw_uid, server_user.pw_gid)
    work.chmod(0o711)
    network = Network()
    services: list[Service] = []
    figures: dict = {"ok": False, "n": args.n, "broker": args.broker}
    failed = True
    try:
        network.up()
        figures |= run_all(args, work, network, services, server_user)
        failed = not figures["ok"]
    except KeyboardInterrupt:
        figures["error"] = "interrupted"
    except Exception as exc:
        figures["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        # A second Ctrl-C or SIGTERM does not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_hosts(services)
        stop_all(services, timeout=15)
        network.down()
        if args.keep_logs or failed:
            figures["logs"] = str(work)
            say(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    emit(figures)
    return 0 if figures["ok"] else 1


def stop_hosts(services: list[Service]) -> None:
    """Ends the workers and beat: the cut host's at once (it can reach nothing, so a warm
    shutdown would only wait), the others with a warm shutdown."""
    stop_all([s for s in services if s.name == f"worker-{CUT}"], timeout=0.1)
    stop_all([s for s in services if s.name.startswith(("worker-", "beat"))], timeout=15)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def run_all(args, work: Path, network: Network, services: list[Service], server_user) -> dict:
    started_all = time.monotonic()
    redis_port, pgbouncer_port = free_port(GATEWAY), free_port(GATEWAY)
    redis_server = spawn(
        "redis",
        ["redis-server", "--bind", GATEWAY, "--port", str(redis_port), "--save", "",
         "--appendonly", "no", "--protected-mode", "no", "--tcp-keepalive", "5",
         "--dir", str(work)],
        os.environ.copy(), work,
    )  # fmt: skip
    services.append(redis_server)
    config = BenchConfig(db_name=args.db_name)
    fresh_database(config)
    _database_backstop(config)
    ini = pgbouncer_config(work, config.db_name, pgbouncer_port)
    pgbouncer = spawn(
        "pgbouncer", [pgbouncer_binary(), "-u", server_user.pw_name, str(ini)], os.environ.copy(),
        work,
    )  # fmt: skip
    services.append(pgbouncer)
    wait_until(lambda: answers((GATEWAY, redis_port)), 20, "redis-server", services)
    wait_until(lambda: answers((GATEWAY, pgbouncer_port)), 20, "PgBouncer", services)
    redis_url = f"redis://{GATEWAY}:{redis_port}/0"
    with contextlib.ExitStack() as stack:
        if args.broker == "rabbitmq":
            vhost = f"signal-multihost-{os.getpid()}"
            stack.enter_context(rabbitmq_vhost(vhost))
            amqp_port = free_port(GATEWAY)
            # A forwarder per connection; one whose host vanished is closed as PgBouncer
            # closes its clients (keepalive when idle; TCP_USER_TIMEOUT, option 18 of
            # IPPROTO_TCP, while RabbitMQ's deliveries wait unacknowledged), so RabbitMQ
            # requeues what that host had not acknowledged.
            socat = spawn(
                "socat",
                ["socat",
                 f"TCP-LISTEN:{amqp_port},bind={GATEWAY},reuseaddr,fork,keepalive,keepidle=5,"
                 f"keepintvl=2,keepcnt=3,setsockopt-int=6:18:{TCP_USER_TIMEOUT_MS}",
                 f"TCP:{RABBITMQ[0]}:{RABBITMQ[1]}"],
                os.environ.copy(), work,
            )  # fmt: skip
            services.append(socat)
            wait_until(lambda: answers((GATEWAY, amqp_port)), 20, "socat", services)
            broker_url = f"amqp://guest:guest@{GATEWAY}:{amqp_port}/{vhost}"
        else:
            broker_url = redis_url
        shared = {
            **base_env(config),
            "REDIS_URL": redis_url,
            "CACHE_URL": redis_url,
            "CELERY_BROKER_URL": broker_url,
            **TAKEOVER_ENV,
        }
        os.environ.update(shared)  # this process: direct to PostgreSQL, the same Redis/broker
        import django

        django.setup()
        from fakes.process import running_fake_providers

        fakes = stack.enter_context(
            running_fake_providers(state_dir=work / "fakes", host=GATEWAY, track_tokens=True)
        )
        # Leaving this block: the workers and beat end first (before the fakes and the
        # RabbitMQ virtual host go); the cut host's at once (it can reach nothing).
        stack.callback(stop_hosts, services)
        ready_dir = work / "ready"
        ready_dir.mkdir()
        worker_env = {
            **os.environ,
            **shared,
            "DATABASE_URL": (f"postgres://postgres@{GATEWAY}:{pgbouncer_port}/{config.db_name}"),
            "DB_TRANSACTION_POOLER": "true",
            **providers_env(fakes, web_push_hosts=GATEWAY),
            "BENCH_READY_DIR": str(ready_dir),
        }
        for host, ns, _veth, _address in HOSTS:
            services.append(spawn(f"worker-{host}", worker_command(host, ns), worker_env, work))
        workers = [s for s in services if s.name.startswith("worker-")]
        wait_until(lambda: len(list(ready_dir.iterdir())) >= len(HOSTS), 120, "workers", workers)
        services.append(spawn("beat", beat_command(HOSTS[0][1], work), worker_env, work))
        say(
            f"up in {time.monotonic() - started_all:.1f} s: PgBouncer {GATEWAY}:{pgbouncer_port},"
            f" broker {broker_url}, fakes {fakes.apns_endpoint} {fakes.fcm_endpoint}, logs {work}"
        )

        from bench.seed import create_application, seed_subscriptions
        from messaging.models import Subscription

        application, _key = create_application(fakes, "multihost")
        seeded = seed_subscriptions(application, args.n)
        expected = set(
            Subscription.objects.filter(application=application).values_list("token", flat=True)
        )
        say(f"seeded {args.n} subscriptions in {seeded['seconds']} s")
        fakes.reset()
        result = campaign_run(args, network, fakes, pgbouncer_port, config, services, application)
        result["provider"] = provider_figures(fakes, expected)
        result["setup_s"] = round(result.pop("_setup_until") - started_all, 1)
        result["network"] = {
            "bridge": BRIDGE,
            "gateway": GATEWAY,
            "hosts": {host: {"namespace": ns, "address": a} for host, ns, _v, a in HOSTS},
        }
        return judge(result, args.n)


def _database_backstop(config: BenchConfig) -> None:
    """The workers cannot set idle_in_transaction_session_timeout through PgBouncer (a startup
    parameter): it is set on the database, for every session."""
    import psycopg

    with psycopg.connect(
        host=config.db_host, port=config.db_port, user=config.db_user, dbname="postgres",
        autocommit=True,
    ) as connection:  # fmt: skip
        connection.execute(
            f'ALTER DATABASE "{config.db_name}" SET idle_in_transaction_session_timeout'
            f" = '{IDLE_IN_TRANSACTION_BACKSTOP}'"
        )


def campaign_run(args, network, fakes, pgbouncer_port, config, services, application) -> dict:
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import CampaignRun, RunStatus
    from operations import probes

    n = args.n
    setup_until = time.monotonic()
    run = campaign_start(application, n, args.fanout_seconds)
    started = time.monotonic()
    say(f"campaign run {run.pk} started")
    cut_address = dict((h, a) for h, _ns, _v, a in HOSTS)[CUT]
    cut_ns = dict((h, ns) for h, ns, _v, _a in HOSTS)[CUT]
    seen_before_cut: set[str] = set()
    cut_at = cut_db_time = None
    before_cut: dict = {}
    takeover_s = clients_gone_s = heartbeat_gone_s = None
    last_successful, last_move, longest_stall = 0, started, 0.0
    next_probe = next_report = 0.0
    state = {}
    while True:
        now = time.monotonic()
        row = CampaignRun.objects.filter(pk=run.pk).values(
            "status", "pending", "successful", "failed", "fanout_done", "targeted"
        )[0]
        state = row
        if row["successful"] != last_successful:
            if cut_at is not None:
                longest_stall = max(longest_stall, now - last_move)
            last_successful, last_move = row["successful"], now
        if now >= next_probe:
            next_probe = now + 1.0
            online = {host_of(w["hostname"]) for w in probes.workers_online()}
            if cut_at is None:
                seen_before_cut |= online
            elif heartbeat_gone_s is None and CUT not in online:
                heartbeat_gone_s = round(now - cut_at, 1)
            if cut_at is not None and clients_gone_s is None:
                with contextlib.suppress(Exception):
                    if not pgbouncer_clients(pgbouncer_port, config.db_name).get(cut_address):
                        clients_gone_s = round(now - cut_at, 1)
            if (
                cut_at is not None
                and takeover_s is None
                and pending_created_before(run.pk, cut_db_time) == 0
            ):
                takeover_s = round(now - cut_at, 1)
        if cut_at is None and row["successful"] >= args.cut_at * n:
            network.cut(cut_ns)
            cut_at, cut_db_time = time.monotonic(), timezone.now()
            before_cut = {
                "successful": row["successful"],
                "sent_by_host": peers_now(fakes),
                "workers_seen": sorted(seen_before_cut),
                # The cut host's client connections inside a transaction at the cut.
                "open_transactions": pgbouncer_clients(
                    pgbouncer_port, config.db_name, "active"
                ).get(cut_address, 0),
            }
            say(f"  {cut_at - started:5.1f} s: CUT {CUT} ({cut_ns}) at {row['successful']} "
                f"successful; sent so far by host {before_cut['sent_by_host']}")  # fmt: skip
        if row["status"] != RunStatus.RUNNING:
            break
        if cut_at is not None and now - cut_at > args.timeout:
            break
        if cut_at is None and now - started > args.fanout_seconds + args.timeout:
            break
        if now >= next_report:
            next_report = now + 5.0
            say(
                f"  {now - started:5.1f} s: targeted {row['targeted']}, pending {row['pending']},"
                f" successful {row['successful']}, failed {row['failed']}"
            )
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    connection.close()
    # PgBouncer's keepalive drops the cut host's connections (idle or in a transaction)
    # within about 11 s: waited for (bounded), to report it.
    deadline = time.monotonic() + 30
    while cut_at is not None and clients_gone_s is None and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if not pgbouncer_clients(pgbouncer_port, config.db_name).get(cut_address):
                clients_gone_s = round(time.monotonic() - cut_at, 1)
        time.sleep(0.5)
    if (
        cut_at is not None
        and takeover_s is None
        and pending_created_before(run.pk, cut_db_time) == 0
    ):
        takeover_s = round(time.monotonic() - cut_at, 1)
    after = message_checks(run.pk, n)
    say(f"  {elapsed:5.1f} s: run {state.get('status')}; {after['statuses']}")
    return {
        "_setup_until": setup_until,
        "run_status": state.get("status"),
        "elapsed_s": round(elapsed, 1),
        "cut": cut_at is not None,
        "cut_host": CUT,
        "cut_after_s": round(cut_at - started, 1) if cut_at else None,
        "successful_at_cut": before_cut.get("successful"),
        "cut_host_open_transactions_at_cut": before_cut.get("open_transactions"),
        "workers_seen_before_cut": before_cut.get("workers_seen", sorted(seen_before_cut)),
        "sent_by_host_before_cut": before_cut.get("sent_by_host"),
        "takeover_s": takeover_s,
        "cut_host_db_clients_gone_after_s": clients_gone_s,
        "cut_host_heartbeat_gone_after_s": heartbeat_gone_s,
        "longest_stall_after_cut_s": round(longest_stall, 1),
        **after,
        "settings": {
            **TAKEOVER_ENV,
            "pgbouncer": {**KEEPALIVE, "tcp_user_timeout_ms": TCP_USER_TIMEOUT_MS},
            "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_BACKSTOP,
            "fanout_seconds": args.fanout_seconds,
        },
    }


def judge(result: dict, n: int) -> dict:
    """ok: each subscription exactly one message, all successful, every token at the
    provider, all three hosts sent, the cut host's work was taken over."""
    provider = result["provider"]
    by_host = provider["by_host"]
    checks = {
        "one_message_each": result["messages"] == n
        and result["subscriptions_messaged"] == n
        and result["subscriptions_with_more_than_one"] == 0
        and result["unique_index"],
        "all_successful": result["statuses"].get("successful") == n,
        "every_token_at_provider": provider["missing"] == 0 and provider["unexpected"] == 0,
        "all_hosts_sent": all(by_host.get(h, 0) > 0 for h, *_rest in HOSTS),
        "all_hosts_seen_before_cut": set(result["workers_seen_before_cut"])
        >= {h for h, *_rest in HOSTS},
        "taken_over": bool(result["cut"]) and result["takeover_s"] is not None
        and result["run_status"] == "completed",
    }  # fmt: skip
    result["checks"] = checks
    result["ok"] = all(checks.values())
    return result


if __name__ == "__main__":
    sys.exit(main())
