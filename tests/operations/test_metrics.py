"""/metrics: the contract's names after a real delivery batch, every process's counters
summed, the bearer token, and a scrape that stays fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from messaging import delivery
from tests.conftest import api_client, application_with_keys, subscription_create
from tests.messaging.test_delivery_pipeline import ids, ios_token, send
from tests.operations.conftest import heartbeat

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_state")]
ROOT = Path(__file__).resolve().parents[2]


def scrape(**headers) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one /metrics answer."""
    response = Client().get("/metrics", **headers)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_delivery_batch_is_counted_by_channel_and_outcome(
    fake_app, providers, django_capture_on_commit_callbacks
):
    ok = [subscription_create(fake_app, token=ios_token()) for _ in range(3)]
    refused = subscription_create(fake_app, token=ios_token("bad0"))  # 400 BadDeviceToken
    broken = subscription_create(fake_app, token=ios_token("0500"))  # 500: tried again later
    messages = send(fake_app, [*ok, refused, broken])
    before = scrape()

    # Counted when the batch's transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        report = delivery.deliver_batch(ids(messages), queue="messages")

    assert report.claimed == 5
    after = scrape()
    deliveries = "signal_deliveries_total"
    for outcome, n in (("successful", 3), ("failed", 1), ("retried", 1)):
        delta = value(after, deliveries, channel="iOSPush", outcome=outcome) - value(
            before, deliveries, channel="iOSPush", outcome=outcome
        )
        assert delta == n, outcome
    count = "signal_provider_latency_seconds_count"
    assert value(after, count, channel="iOSPush") - value(before, count, channel="iOSPush") == 5
    assert value(after, "signal_provider_latency_seconds_sum", channel="iOSPush") > value(
        before, "signal_provider_latency_seconds_sum", channel="iOSPush"
    )
    inf = value(after, "signal_provider_latency_seconds_bucket", channel="iOSPush", le="+Inf")
    assert inf == value(after, count, channel="iOSPush")


def test_the_scrape_has_the_probe_gauges_and_the_api_requests():
    heartbeat()
    keys = application_with_keys()
    api = api_client(keys.server.raw)
    assert api.get("/api/v1/applications/current").status_code == 200
    assert api_client("nope").get("/api/v1/applications/current").status_code == 401

    samples = scrape()

    requests = "signal_api_requests_total"
    assert value(samples, requests, view="application-current", status="200") >= 1
    assert value(samples, requests, view="application-current", status="401") >= 1
    for queue in ("critical", "messages", "campaigns", "retry"):
        assert ("signal_queue_depth", (("queue", queue),)) in samples
    assert value(samples, "signal_oldest_pending_seconds") == 0.0
    assert ("signal_oldest_pending_seconds", ()) in samples
    assert value(samples, "signal_workers_online") == 1.0
    # django-prometheus' figures of all requests are there too.
    assert value(samples, "django_http_requests_latency_including_middlewares_seconds_count") >= 2


def test_the_counters_of_two_processes_are_summed():
    labels = {"channel": "SMS", "outcome": "failed"}
    before = value(scrape(), "signal_deliveries_total", **labels)
    other = (
        "import django; django.setup(); from core.metrics import DELIVERIES; "
        "DELIVERIES.labels(channel='SMS', outcome='failed').inc(3)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    subprocess.run([sys.executable, "-c", other], cwd=ROOT, env=env, check=True, timeout=60)
    metrics.DELIVERIES.labels(**labels).inc(2)

    assert value(scrape(), "signal_deliveries_total", **labels) - before == 5


def test_metrics_token_is_asked_for_when_set(settings):
    settings.METRICS_TOKEN = "s3cret-token"

    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "s3cret"}):
        response = Client().get("/metrics", **headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_failed"
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")


def test_a_scrape_takes_less_than_100_ms():
    heartbeat()
    scrape()
    durations = []
    for _ in range(5):
        started = time.perf_counter()
        scrape()
        durations.append(time.perf_counter() - started)

    assert sorted(durations)[2] < 0.1, durations


def test_histogram_add_writes_what_observe_would():
    """core.metrics.histogram_add relies on prometheus-client's private histogram layout."""
    values = [0.001, 0.005, 0.0051, 0.3, 0.3, 2.0, 9.9, 10.0, 42.0]
    one_by_one = Histogram("ops_test_one_by_one_seconds", "t", buckets=metrics.LATENCY_BUCKETS)
    at_once = Histogram("ops_test_at_once_seconds", "t", buckets=metrics.LATENCY_BUCKETS)
    for v in values:
        one_by_one.observe(v)

    metrics.histogram_add(at_once, values)

    assert [b.get() for b in at_once._buckets] == [b.get() for b in one_by_one._buckets]
    assert at_once._sum.get() == pytest.approx(one_by_one._sum.get())


def test_gunicorn_removes_the_live_gauges_of_a_worker_that_exits():
    """gunicorn.conf.py's child_exit, as the master runs it for an exited worker's pid."""
    import runpy
    import socket
    from types import SimpleNamespace

    from core.metrics_process import multiprocess_dir

    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    host = socket.gethostname().replace("_", "-")
    live = Path(multiprocess_dir()) / f"gauge_livesum_{host}-999999.db"
    kept = Path(multiprocess_dir()) / f"counter_{host}-999999.db"
    live.write_bytes(b"")
    kept.write_bytes(b"")
    try:
        config["child_exit"](server=None, worker=SimpleNamespace(pid=999999))

        assert not live.exists()
        assert kept.exists()  # its counts stay in the totals
    finally:
        live.unlink(missing_ok=True)
        kept.unlink(missing_ok=True)
