"""How long a /metrics scrape takes while the service works: scrapes every `--every` seconds
for `--seconds` (or until the file `--stop-file` appears), then prints one JSON object with
the count, p50, p95 and max in milliseconds, how many took over 100 ms, and the size of the
last answer. A first scrape, before the clock, warms the process up.

    python bench/scrape.py --url http://127.0.0.1:8000/metrics [--token T] [--seconds 120]

Run it beside a campaign bench (bench/campaign.py) pointed at the same deployment; with
`--in-process` it calls the view through Django's test client instead of HTTP, reading the
metric files of PROMETHEUS_MULTIPROC_DIR and the broker of the environment (the bench's
DATABASE_URL, REDIS_URL and CELERY_BROKER_URL), as a web process would.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _http_scraper(url: str, token: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def scrape() -> int:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 (the caller's URL)
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return len(answer.read())

    return scrape


def _in_process_scraper(token: str):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")
    import django

    django.setup()
    from django.test import Client

    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def scrape() -> int:
        response = client.get("/metrics", **headers)
        assert response.status_code == 200, response.status_code
        return len(response.content)

    return scrape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/metrics")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--token", default=os.environ.get("METRICS_TOKEN", ""))
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--stop-file", default="")
    args = parser.parse_args()
    scrape = (
        _in_process_scraper(args.token) if args.in_process else _http_scraper(args.url, args.token)
    )
    # One scrape before the clock: a new process's first answer pays its imports, which a
    # serving process paid long before.
    scrape()
    times, size, errors = [], 0, 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        if args.stop_file and Path(args.stop_file).exists():
            break
        started = time.perf_counter()
        try:
            size = scrape()
        except Exception:  # a scrape that fails is counted, not fatal
            errors += 1
        else:
            times.append((time.perf_counter() - started) * 1000)
        time.sleep(max(args.every - (time.perf_counter() - started), 0))
    times.sort()
    print(
        json.dumps(
            {
                "scrapes": len(times),
                "errors": errors,
                "p50_ms": round(statistics.median(times), 1) if times else None,
                "p95_ms": round(times[int(len(times) * 0.95) - 1], 1) if times else None,
                "max_ms": round(times[-1], 1) if times else None,
                "over_100_ms": sum(t > 100 for t in times),
                "bytes": size,
            }
        )
    )


if __name__ == "__main__":
    main()
