"""What the fake providers cost per request: CPU of the fakes' process while the real adapters
push N messages to each, in 500-message batches.

    .venv/bin/python bench/fakes_cost.py [-n 20000] [--batch 500]

Starts `fakes.process.running_fake_providers`, warms each adapter up with one batch
(TLS handshake, provider JWT, OAuth token), then sends N messages through APNsAdapter and
then N through FCMAdapter, reading utime+stime of the fakes' process tree (and its threads)
from /proc before and after each phase. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: Path) -> list[str] | None:
    try:
        stat = path.read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu(root: int) -> float:
    """utime+stime (+ reaped children's) of `root` and its live descendants, in seconds."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = _stat_fields(Path(f"/proc/{pid}/stat"))
        if fields is None:
            continue
        total += sum(int(v) for v in fields[11:15])
        todo += _children(pid)
    return total / CLOCK_TICKS


def user_system(pid: int) -> tuple[float, float]:
    """utime and stime of one process, in seconds."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat")) or ["0"] * 15
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def thread_cpu(pid: int) -> dict[str, float]:
    """Per-thread utime+stime of one process: {"tid name": seconds}."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = _stat_fields(task / "stat")
        if fields is not None:
            threads[f"{task.name} {name}"] = sum(int(v) for v in fields[11:13]) / CLOCK_TICKS
    return threads


def _messages(count: int, token) -> list:
    from adapters.base import OutboundMessage

    return [
        OutboundMessage(
            message_id=str(uuid.uuid4()),
            token=token(),
            title="Spring sale",
            body="Everything 20% off until Sunday",
            data={"campaign": "spring", "n": i},
            priority="high",
            ttl=86400,
        )
        for i in range(count)
    ]


def _apns_token() -> str:
    # "c0": no behaviour prefix (dead, bad0, f1a0, ...) starts with it, so every send succeeds.
    return ("c0" + uuid.uuid4().hex + uuid.uuid4().hex)[:64]


def _fcm_token() -> str:
    return f"tok-{uuid.uuid4().hex}"


def _phase(name, adapter, credentials, pid, n, batch) -> dict:
    token = _apns_token if name == "apns" else _fcm_token
    warm = adapter.send_batch(credentials, _messages(batch, token))
    if not all(r.ok for r in warm):
        raise SystemExit(f"{name}: warm-up batch failed: {[r for r in warm if not r.ok][:3]}")
    batches = [_messages(batch, token) for _ in range(-(-n // batch))]
    threads_before = thread_cpu(pid)
    user_system_before = user_system(pid)
    cpu_before, started = tree_cpu(pid), time.perf_counter()
    client_before = time.process_time()  # this process: the adapter's side of each request
    sent = failed = 0
    failures = []
    for messages in batches:
        messages = messages[: n - sent]
        results = adapter.send_batch(credentials, messages)
        sent += len(messages)
        failures += [r for r in results if not r.ok][:3]
        failed += sum(not r.ok for r in results)
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    cpu = tree_cpu(pid) - cpu_before
    threads_after = thread_cpu(pid)
    user, system = (
        after - before for after, before in zip(user_system(pid), user_system_before, strict=True)
    )
    per_thread = {
        tid: round(threads_after[tid] - threads_before.get(tid, 0.0), 3)
        for tid in threads_after
        if threads_after[tid] - threads_before.get(tid, 0.0) > 0
    }
    result = {
        "sent": sent,
        "failed": failed,
        "wall_s": round(wall, 3),
        "fake_cpu_s": round(cpu, 3),
        "us_per_request": round(cpu / sent * 1e6, 1),
        "client_us_per_request": round(client_cpu / sent * 1e6, 1),
        "rps": round(sent / wall, 1),
        "fake_cpu_share": round(cpu / wall, 3),
        "user_s": round(user, 3),
        "system_s": round(system, 3),
        "threads": per_thread,
    }
    print(f"{name}: {json.dumps(result)}", flush=True)
    if failed:
        raise SystemExit(f"{name}: {failed} of {sent} messages failed, e.g. {failures[:3]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages per provider (20000)")
    parser.add_argument("--batch", type=int, default=500, help="messages per send_batch (500)")
    args = parser.parse_args()

    import django

    django.setup()
    from adapters.apns import APNsAdapter
    from adapters.fcm import FCMAdapter
    from fakes.process import running_fake_providers

    with running_fake_providers() as fakes:
        print(f"fakes pid {fakes.pid}, {os.cpu_count()} CPUs", flush=True)
        apns = APNsAdapter(endpoint=fakes.apns_endpoint, ca_file=fakes.ca_file, timeout=30)
        fcm = FCMAdapter(endpoint=fakes.fcm_endpoint, timeout=30)
        try:
            a = _phase("apns", apns, fakes.apns_credentials(), fakes.pid, args.n, args.batch)
            f = _phase("fcm", fcm, fakes.fcm_credentials(), fakes.pid, args.n, args.batch)
            apns_stats, fcm_stats = fakes.apns_stats(), fakes.fcm_stats()
        finally:
            apns.close()
            fcm.close()
    expected = args.n + args.batch
    if apns_stats["requests"] != expected or fcm_stats["requests"] != expected:
        raise SystemExit(
            f"the fakes counted {apns_stats['requests']} APNs and {fcm_stats['requests']} FCM "
            f"requests, expected {expected} each"
        )
    total = (a["fake_cpu_s"] + f["fake_cpu_s"]) / (2 * args.n)
    print(
        f"fake CPU at 5,000 msg/s (half each): {total * 5000:.3f} CPU-s/s "
        f"(budget 0.5 = a quarter of 2 cores)",
        flush=True,
    )
    summary = {
        "apns_us_per_request": a["us_per_request"],
        "fcm_us_per_request": f["us_per_request"],
        "apns_client_us_per_request": a["client_us_per_request"],
        "fcm_client_us_per_request": f["client_us_per_request"],
        "apns_rps": a["rps"],
        "fcm_rps": f["rps"],
        "n": args.n,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
