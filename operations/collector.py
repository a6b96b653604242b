"""Gauges read at scrape time from operations.probes (not stored by any process):
signal_queue_depth{queue}, signal_oldest_pending_seconds, signal_workers_online. A broker
that cannot answer leaves the queue gauges out of the scrape (absent, not a false 0);
signal_workers_online is 0 both when no worker reports and when Redis does not answer (either
way nothing is known to deliver)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from . import probes


class ProbeCollector:
    def collect(self):
        depths = probes.queue_depths()
        depth = GaugeMetricFamily(
            "signal_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"]
        )
        for queue, n in sorted(depths.items()):
            depth.add_metric([queue], n)
        yield depth
        # A broker that did not answer for the depths is not asked again.
        oldest = probes.oldest_pending_seconds(depths) if depths else None
        if oldest is not None:
            yield GaugeMetricFamily(
                "signal_oldest_pending_seconds",
                "Seconds the oldest task waiting in the broker has waited (on RabbitMQ an "
                "upper bound).",
                value=oldest,
            )
        yield GaugeMetricFamily(
            "signal_workers_online",
            "Worker processes whose heartbeat is fresh.",
            value=len(probes.workers_online()),
        )

    def describe(self):
        return []
