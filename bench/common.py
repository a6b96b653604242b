"""What every bench script shares: the bench environment (set before Django starts), the
machine description, /proc accounting and percentiles."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Fixed, NOT secret: the bench database is dropped on every run.
BENCH_FERNET_KEY = "gUw2m0mT3o4T8kZb2j9Yk7rR7y3mXh6b2c0a1Qm8sVw="
BENCH_HMAC_KEY = "bench-token-hmac-key"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class BenchConfig:
    """Where the bench's data lives: its own PostgreSQL database and Redis database, and the
    broker (the same Redis unless `broker_url` names another)."""

    db_name: str = "signal_bench"
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "postgres"
    redis_db: int = 11
    redis_port: int = 6379
    broker_url: str = ""

    @property
    def database_url(self) -> str:
        return f"postgres://{self.db_user}@{self.db_host}:{self.db_port}/{self.db_name}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/{self.redis_db}"


def base_env(config: BenchConfig) -> dict[str, str]:
    """The variables the bench process and every process of the stack share."""
    return {
        "DJANGO_SETTINGS_MODULE": "signal_project.settings",
        "DATABASE_URL": config.database_url,
        "REDIS_URL": config.redis_url,
        # Named explicitly: a .env or the test settings could point them elsewhere.
        "CELERY_BROKER_URL": config.broker_url or config.redis_url,
        "CACHE_URL": config.redis_url,
        "FIELD_ENCRYPTION_KEYS": BENCH_FERNET_KEY,
        "TOKEN_HMAC_KEY": BENCH_HMAC_KEY,
        "API_RATE_LIMIT": "100000",  # the bench measures the pipeline, not the throttle
        "DEBUG": "false",
        # The stack serves plain HTTP on loopback: no redirect to HTTPS, no Secure-only cookies.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        # The logs a run writes: WARNING unless BENCH_LOG_LEVEL says (INFO: every task logged).
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def setup_django(config: BenchConfig) -> None:
    """Points this process at the bench database and Redis, then starts Django."""
    os.environ.update(base_env(config))
    import django

    django.setup()


def add_stack_arguments(parser) -> None:
    """Options every script that brings up a stack takes."""
    # By default the stack's worker is the deployment's: the README's command, whose pool,
    # concurrency and prefetch come from the settings (CELERY_WORKER_*), as in docker-compose.
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (1)")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="pool size per worker (the settings')"
    )
    parser.add_argument("--pool", default="", help="Celery pool (the settings': prefork)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--db-name", default="signal_bench", help="database, dropped first")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database, flushed")
    parser.add_argument("--keep-logs", action="store_true", help="print the logs' directory")
    parser.add_argument(
        "--quiet-workers",
        action="store_true",
        help="start workers --without-gossip --without-mingle --without-heartbeat",
    )


def settings_concurrency() -> int:
    """The pool size a worker started without -c has (CELERY_WORKER_CONCURRENCY)."""
    from django.conf import settings

    return settings.CELERY_WORKER_CONCURRENCY


def config_from(args) -> BenchConfig:
    return BenchConfig(db_name=args.db_name, redis_db=args.redis_db)


# --- Figures ------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear-interpolated percentile (as PostgreSQL's percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def emit(figures: dict) -> None:
    """The last line of output: one JSON object."""
    print(json.dumps(figures, sort_keys=False, default=str), flush=True)


# --- Machine ------------------------------------------------------------------------------------


def cpu_calibration_ms() -> float:
    """CPU milliseconds a fixed pure-Python loop takes here, best of three: the same code
    on the same 'machine' can run at very different speeds from one day (or host) to the
    next, and figures are only comparable next to this."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        sum(i * i for i in range(2_000_000))
        best = min(best, time.process_time() - start)
    return round(best * 1000, 1)


def machine() -> dict:
    """CPU count and model, memory, software versions, the git commit and a CPU
    calibration (see cpu_calibration_ms)."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cpu_calibration_ms": cpu_calibration_ms(),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --- /proc accounting ---------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process we can see."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(root: int) -> list[int]:
    """The root and all its live descendants."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents:
            tree.append(pid)
            todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process and of its reaped children (so exited backends still count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the name: state is field 3, so utime (14) .. cstime (17) are indexes 11..14.
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    return sum(cpu_seconds(pid) for pid in process_tree(root))


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the highest resident set size the process ever had."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent by named process trees between start() and stop()."""

    def __init__(self, roots: dict[str, list[int]]):
        self.roots = roots
        self.before: dict[str, float] = {}
        self.started = 0.0
        self.elapsed = 0.0
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        sample = {
            name: sum(tree_cpu_seconds(pid) for pid in pids) for name, pids in self.roots.items()
        }
        # This process alone (its tree holds the whole stack): the load generator's cost.
        sample["bench_process"] = time.process_time()
        # Everything the machine did, ours or not: what is left over is other people's load.
        sample["machine_busy"] = machine_busy_seconds()
        return sample

    def start(self) -> CpuMeter:
        self.before = self._sample()
        self.started = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        after = self._sample()
        self.elapsed = time.monotonic() - self.started
        self.used = {name: after[name] - self.before.get(name, 0.0) for name in after}
        return self.used

    def shares(self) -> dict[str, float]:
        """Each tree's CPU time as a fraction of the whole machine over the interval;
        `other` is what processes outside the stack (e.g. someone's tests) used."""
        capacity = max(self.elapsed, 1e-9) * (os.cpu_count() or 1)
        shares = {name: round(used / capacity, 3) for name, used in self.used.items()}
        ours = sum(used for name, used in self.used.items() if name != "machine_busy")
        shares["other"] = round(max(self.used.get("machine_busy", 0.0) - ours, 0.0) / capacity, 3)
        return shares


# --- HTTP ---------------------------------------------------------------------------------------


def http_json(method: str, url: str, api_key: str, body: dict | None = None) -> tuple[int, dict]:
    """One JSON request with urllib (the bench's few control calls; the load uses aiohttp)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (the bench's own loopback server)
        url,
        data=data,
        method=method,
        headers={"X-API-Key": api_key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def send_batches_timed(adapter, credentials, batches, n: int, fake_pid: int) -> dict:
    """Sends `batches` (lists of OutboundMessage) through `adapter.send_batch`, n messages in
    all, and measures it: the wall time, this process's CPU (the adapter's side), the fake's
    CPU and the whole machine's busy time, apart; with the count of failures and a few of
    them. The benches of one adapter against its fake (bench/adapter_*.py) share it."""
    fake_before, busy_before = cpu_seconds(fake_pid), machine_busy_seconds()
    client_before, started = time.process_time(), time.perf_counter()
    sent = failed = 0
    failures = []
    for messages in batches:
        messages = messages[: n - sent]
        results = adapter.send_batch(credentials, messages)
        sent += len(messages)
        failed += sum(not r.ok for r in results)
        failures += [r for r in results if not r.ok][:3]
    return {
        "sent": sent,
        "failed": failed,
        "failures": failures,
        "wall": time.perf_counter() - started,
        "client_cpu": time.process_time() - client_before,
        "fake_cpu": cpu_seconds(fake_pid) - fake_before,
        "busy": machine_busy_seconds() - busy_before,
    }


def adapter_figures(timed: dict, target_rate: int) -> dict:
    """The rate and the CPU per message of send_batches_timed's measurement, and the share of
    this machine the adapter and the fake would each take at `target_rate` messages/s."""
    sent, wall = timed["sent"], timed["wall"]
    client_cpu, fake_cpu = timed["client_cpu"], timed["fake_cpu"]
    cores = os.cpu_count() or 1
    return {
        "msg_per_s": round(sent / wall, 1),
        "wall_s": round(wall, 3),
        "client_cpu_s_per_1000": round(client_cpu / sent * 1000, 4),
        "fake_cpu_s_per_1000": round(fake_cpu / sent * 1000, 4),
        "client_us_per_msg": round(client_cpu / sent * 1e6, 1),
        "fake_us_per_msg": round(fake_cpu / sent * 1e6, 1),
        f"client_share_at_{target_rate}": round(client_cpu / sent * target_rate / cores, 3),
        f"fake_share_at_{target_rate}": round(fake_cpu / sent * target_rate / cores, 3),
        "others_load_share": round(
            max(timed["busy"] - client_cpu - fake_cpu, 0.0) / (wall * cores), 3
        ),
    }
