"""An isolated stack for a benchmark: a fresh PostgreSQL database, a Redis database of its own,
the fake providers, gunicorn and K Celery workers, all ended by PID when the block exits.

    with running_stack(config) as stack:
        stack.web_url, stack.fakes, stack.worker_pids(), stack.cpu_roots()
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from bench.common import ROOT, BenchConfig, base_env, peak_rss_mb, process_tree

QUEUES = "critical,messages,campaigns,retry"
TEMPLATE_PREFIX = "signal_bench_tpl_"
ADVISORY_LOCK = 0x5167_4E41  # serialises template creation between concurrent benches
PR_SET_PDEATHSIG = 1


# --- PostgreSQL and Redis -----------------------------------------------------------------------


def _migrations_digest() -> str:
    """Changes whenever a migration does, so a stale template is never reused: the project's
    migrations, and the pinned requirements (the installed apps' migrations come with them)."""
    digest = hashlib.sha256()
    for path in [*sorted(ROOT.glob("*/migrations/*.py")), ROOT / "requirements.txt"]:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _admin_connection(config: BenchConfig) -> psycopg.Connection:
    return psycopg.connect(
        host=config.db_host,
        port=config.db_port,
        user=config.db_user,
        dbname="postgres",
        autocommit=True,
    )


def _database_exists(cursor, name: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
    return cursor.fetchone() is not None


def _migrate_template(config: BenchConfig, cursor, template: str) -> None:
    """Creates the migrated template once per migration set (migrate takes seconds)."""
    cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [TEMPLATE_PREFIX + "%"])
    for (old,) in cursor.fetchall():
        if old != template:
            cursor.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
    if _database_exists(cursor, template):
        return
    cursor.execute(f'CREATE DATABASE "{template}"')
    env = {**os.environ, **base_env(BenchConfig(**{**config.__dict__, "db_name": template}))}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        cursor.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")


def fresh_database(config: BenchConfig) -> None:
    """Drops and recreates the bench database, migrated (copied from a migrated template)."""
    template = TEMPLATE_PREFIX + _migrations_digest()
    with _admin_connection(config) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK])
        try:
            _migrate_template(config, cursor, template)
            cursor.execute(f'DROP DATABASE IF EXISTS "{config.db_name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{config.db_name}" TEMPLATE "{template}"')
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK])


def postmaster_pid(config: BenchConfig) -> int | None:
    """The PostgreSQL server's main process: the parent of our backend."""
    with _admin_connection(config) as connection:
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        stat = Path(f"/proc/{backend}/stat").read_text()
    except OSError:
        return None  # a server in another PID namespace (a container): not measurable
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def fresh_redis(config: BenchConfig) -> int | None:
    """Flushes the bench's Redis database; returns the server's PID if it is local."""
    client = redis.Redis.from_url(config.redis_url)
    client.flushdb()
    pid = client.info("server").get("process_id")
    return int(pid) if pid and Path(f"/proc/{pid}").exists() else None


# --- Processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """One process (and its process group) we started."""

    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the bench dies without tearing down (SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Service:
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a signal reaches its children
            preexec_fn=_die_with_parent,  # safe: no other thread runs yet
        )
    return Service(name, process, log)


def stop_all(services: list[Service], timeout: float = 20.0) -> None:
    """SIGTERM every group, wait, then SIGKILL what is left; only our own PIDs."""
    for service in services:
        if service.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for service in services:
        try:
            service.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGKILL)
            service.process.wait(timeout=10)
        # Pool children left behind in the group (the main process died first) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.pid, signal.SIGKILL)


def _wait(predicate, timeout: float, what: str, services: list[Service]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [s for s in services if not s.alive()]
        if dead:
            raise RuntimeError(f"{dead[0].name} exited while starting:\n{dead[0].log_tail()}")
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout} s")


def _web_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/api/v1/messages", timeout=5)  # noqa: S310 (loopback)
    except urllib.error.HTTPError:
        return True  # 401/403 without a key: a worker answered
    except OSError:
        return False
    return True


# --- The stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    config: BenchConfig
    log_dir: Path
    env: dict[str, str]
    fakes: object
    web: Service
    workers: list[Service]
    web_url: str
    postgres_pid: int | None
    redis_pid: int | None
    rss_peaks: dict[int, float] = field(default_factory=dict)
    beat: Service | None = None
    worker_commands: list[list[str]] = field(default_factory=list)
    restarts: int = 0

    def restart_dead_workers(self) -> list[str]:
        """Starts again every worker whose process exited, as a supervisor would; returns the
        names of those it restarted."""
        restarted = []
        for index, worker in enumerate(self.workers):
            if not worker.alive():
                stop_all([worker])  # pool children its death left behind
                self.workers[index] = spawn(
                    worker.name, self.worker_commands[index], self.env, self.log_dir
                )
                restarted.append(worker.name)
        self.restarts += len(restarted)
        return restarted

    def worker_pids(self) -> list[int]:
        """Every worker process: the main ones and their pool children."""
        return [pid for w in self.workers for pid in process_tree(w.pid)]

    def cpu_roots(self) -> dict[str, list[int]]:
        roots = {
            "fakes": [self.fakes.pid],
            "workers": [w.pid for w in self.workers],
            "web": [self.web.pid],
        }
        if self.postgres_pid:
            roots["postgres"] = [self.postgres_pid]
        if self.redis_pid:
            roots["redis"] = [self.redis_pid]
        return roots

    def sample_rss(self) -> None:
        """Remembers each worker process's peak RSS, in case it exits before the end."""
        for pid in self.worker_pids():
            self.rss_peaks[pid] = max(self.rss_peaks.get(pid, 0.0), peak_rss_mb(pid))

    def check_alive(self) -> None:
        for service in [self.web, *self.workers]:
            if not service.alive():
                raise RuntimeError(f"{service.name} died:\n{service.log_tail()}")


# What --quiet-workers leaves out: the cluster chatter (gossip, mingle, event heartbeats).
# Measured, it costs nothing a benchmark sees (bench/RESULTS.md, "The default deployment"), so
# by default the workers run as deployed.
QUIET_WORKER = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def _worker_command(
    index: int, concurrency: int, pool: str, extra: list[str] | None = None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "signal_project",
        "worker",
        "-Q",
        QUEUES,
        *(["-c", str(concurrency)] if concurrency else []),
        *(["-P", pool] if pool else []),
        "-n",
        f"bench{index}@%h",
        "-l",
        "warning",
        "--include",
        "bench.naive",  # the baseline's tasks; also writes the ready file
        *(extra or []),
    ]


def _beat_command(schedule_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "signal_project",
        "beat",
        "-l",
        "warning",
        "--pidfile",
        str(schedule_dir / "beat.pid"),
    ]


def _web_command(port: int, web_workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "signal_project.wsgi:application",
        "-w",
        str(web_workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]


def providers_env(fakes, *, web_push_hosts: str) -> dict[str, str]:
    """The settings that point the adapters at the running fake providers."""
    return {
        "APNS_ENDPOINT": fakes.apns_endpoint,
        "APNS_CA_FILE": fakes.ca_file,
        "FCM_ENDPOINT": fakes.fcm_endpoint,
        "SMS_ENDPOINT": fakes.sms_endpoint,
        "KAKAO_ENDPOINT": fakes.kakao_endpoint,
        "SMTP_CA_FILE": fakes.ca_file,
        "WEB_PUSH_ALLOWED_HOSTS": web_push_hosts,
    }


def running_stack_of(config: BenchConfig, args) -> contextlib.AbstractContextManager[Stack]:
    """running_stack with the options bench.common.add_stack_arguments parsed into `args`."""
    return running_stack(
        config,
        workers=args.workers,
        concurrency=args.concurrency,
        pool=args.pool,
        web_workers=args.web_workers,
        keep_logs=args.keep_logs,
        worker_options=QUIET_WORKER if getattr(args, "quiet_workers", False) else [],
    )


@contextlib.contextmanager
def running_stack(
    config: BenchConfig,
    *,
    workers: int = 1,
    concurrency: int = 0,
    pool: str = "",
    web_workers: int = 2,
    keep_logs: bool = False,
    extra_env: dict[str, str] | None = None,
    worker_options: list[str] | None = None,
    beat: bool = False,
) -> Iterator[Stack]:
    """Brings the whole stack up on fresh data; tears everything down by PID, always."""
    from fakes.process import running_fake_providers

    # SIGTERM unwinds like Ctrl-C, so the teardown below runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    log_dir = Path(tempfile.mkdtemp(prefix="signal-bench-"))
    services: list[Service] = []
    failed = True
    try:
        started = time.monotonic()
        fresh_database(config)
        redis_pid = fresh_redis(config)
        with running_fake_providers(state_dir=log_dir / "fakes") as fakes:
            ready_dir = log_dir / "ready"
            ready_dir.mkdir()
            env = {
                **os.environ,
                **base_env(config),
                **providers_env(fakes, web_push_hosts="127.0.0.1"),
                "BENCH_READY_DIR": str(ready_dir),
                **(extra_env or {}),
            }
            port = free_port()
            web = spawn("web", _web_command(port, web_workers), env, log_dir)
            services.append(web)
            commands = [
                _worker_command(index, concurrency, pool, worker_options)
                for index in range(workers)
            ]
            for index, command in enumerate(commands):
                services.append(spawn(f"worker{index}", command, env, log_dir))
            web_url = f"http://127.0.0.1:{port}"
            _wait(lambda: _web_answers(web_url), 60, "gunicorn", services)
            _wait(lambda: len(list(ready_dir.iterdir())) >= workers, 90, "Celery workers", services)
            beat_service = None
            if beat:
                beat_service = spawn("beat", _beat_command(log_dir), env, log_dir)
                services.append(beat_service)
            stack = Stack(
                config=config,
                log_dir=log_dir,
                env=env,
                fakes=fakes,
                web=web,
                workers=services[1 : 1 + workers],
                web_url=web_url,
                postgres_pid=postmaster_pid(config),
                redis_pid=redis_pid,
                beat=beat_service,
                worker_commands=commands,
            )
            print(
                f"stack up in {time.monotonic() - started:.1f} s: web {web_url} "
                f"({web_workers} workers), {workers} Celery workers x "
                f"{concurrency or 'CELERY_WORKER_CONCURRENCY'} ({pool or 'prefork'}), "
                f"fakes pid {fakes.pid}, logs {log_dir}",
                flush=True,
            )
            try:
                yield stack
                failed = False
            finally:
                stop_all([stack.web, *stack.workers, *([beat_service] if beat_service else [])])
    finally:
        stop_all(services)
        if keep_logs or failed:
            print(f"logs kept in {log_dir}", flush=True)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
