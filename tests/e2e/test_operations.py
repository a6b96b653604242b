"""Operations with the real stack: a message delivered by a Celery worker process is counted
in the /metrics of this (another) process, the worker's processes report their heartbeats,
and /readyz is ready with them."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from operations import probes

from .conftest import wait_for
from .test_delivery import IOS_OK, send, subscribe, terminal

pytestmark = pytest.mark.e2e


def delivered_ios() -> float:
    text = Client().get("/metrics").content.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "signal_deliveries_total" and labels == {
                "channel": "iOSPush",
                "outcome": "successful",
            }:
                return sample.value
    return 0.0


def test_the_workers_deliveries_and_heartbeats_show_in_metrics_and_readiness(live_app):
    before = delivered_ios()
    ios = [subscribe(live_app, "iOSPush", IOS_OK[:-4] + f"{n:04x}") for n in range(3)]

    ids = send(live_app, subscription_ids=[str(s.pk) for s in ios])
    wait_for(terminal(ids), what="the messages to be delivered")

    assert delivered_ios() - before == 3  # counted by the worker process, summed here
    # Each child beats every 10 s on its own clock; a test before may have emptied the
    # broker's Redis database, so wait until both children have beaten again.
    online = wait_for(
        lambda: (w := probes.workers_online()) and len(w) >= 2 and w,
        timeout=25,
        what="both worker children's heartbeats",
    )
    assert len(online) == 2  # the e2e worker's two prefork children
    assert set(online[0]["queues"]) == {"critical", "messages", "campaigns", "retry"}
    if probes.broker_kind() == "amqp":
        # The worker recorded the publication time of a task it started (the bound of
        # signal_oldest_pending_seconds on RabbitMQ).
        assert probes.state_redis().get(probes.LAST_STARTED_PREFIX + "messages") is not None
    assert probes.oldest_pending_seconds() == 0.0  # nothing waits
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
