"""Template rendering throughput: a typical push template (title, body, a small data object,
two translations) rendered N times with varying variables and languages, as a campaign does
once per subscription.

    python bench/bench_templates.py [--n 200000]

Prints a summary, and as its last line one JSON object:
{"renders_per_second": ..., "n": ..., "p50_us": ...}. Needs no database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")

import django  # noqa: E402

django.setup()

from templates_app.models import TemplateVersion  # noqa: E402
from templates_app.rendering import compiled_cache, render  # noqa: E402

LANGUAGES = ["ko", "en", "en-US", "ja", None, "ko-KR", "fr"]
SAMPLE = 20_000  # renders timed one by one for the percentiles


def typical_version() -> TemplateVersion:
    return TemplateVersion(
        template_id=uuid.uuid4(),
        version=1,
        name="event-start",
        title_template="{{ user_name }}님, 안녕하세요",
        body_template="{{event_name}}이(가) {{ start_date }}에 시작합니다. 지금 확인하세요!",
        data_template={
            "action": "open_screen",
            "event_id": "{{event_id}}",
            "deeplink": "app://events/{{ event_id }}?ref={{campaign}}",
            "tracking": {"campaign": "{{ campaign }}", "variant": "A"},
        },
        translations={
            "en": {
                "title_template": "Hello {{user_name}}",
                "body_template": "{{event_name}} starts on {{start_date}}. Have a look!",
            },
            "ja": {
                "title_template": "{{user_name}}さん、こんにちは",
                "body_template": "{{event_name}}は{{start_date}}に始まります",
                "data_template": {"action": "open_screen", "event_id": "{{event_id}}"},
            },
        },
        default_language="ko",
    )


def variable_sets(count: int) -> list[dict]:
    return [
        {
            "user_name": f"user-{i}",
            "event_name": "Summer sale",
            "start_date": f"2026-07-{i % 28 + 1:02d}",
            "event_id": i,
            **({"campaign": "summer"} if i % 5 else {}),  # sometimes missing
        }
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="renders to time (default 200000)")
    args = parser.parse_args()
    n = max(args.n, 1)

    compiled_cache.clear()
    version = typical_version()
    variables = variable_sets(1000)
    inputs = [(variables[i % 1000], LANGUAGES[i % len(LANGUAGES)]) for i in range(n)]
    render(version, variables[0], "ko")  # compile once, as the first render of a campaign does

    started = time.perf_counter()
    for values, language in inputs:
        render(version, values, language)
    elapsed = time.perf_counter() - started

    timings = []
    clock = time.perf_counter_ns
    for values, language in inputs[: min(n, SAMPLE)]:
        before = clock()
        render(version, values, language)
        timings.append(clock() - before)
    p50_us = statistics.median(timings) / 1000
    p99_us = sorted(timings)[int(len(timings) * 0.99) - 1 if len(timings) > 1 else 0] / 1000

    rate = n / elapsed
    print(
        f"{n} renders in {elapsed:.3f} s: {rate:,.0f} renders/s; p50 {p50_us:.2f} us, "
        f"p99 {p99_us:.2f} us (one core, Python {sys.version.split()[0]})"
    )
    print(json.dumps({"renders_per_second": round(rate), "n": n, "p50_us": round(p50_us, 2)}))


if __name__ == "__main__":
    main()
