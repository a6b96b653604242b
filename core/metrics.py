"""The service's Prometheus metrics, written by every process and summed by /metrics
(prometheus-client's multiprocess mode: see core/metrics_process.py and settings
PROMETHEUS_MULTIPROC_DIR).

Cheap on the delivery path: a batch's results are counted in memory first, then each
(channel, outcome) pair is incremented once and each channel's latencies are added to the
histogram's buckets once (one write per bucket touched, not per message): a batch of 500
messages costs a few dozen memory-mapped writes, not thousands.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter as Tally
from collections import defaultdict

from prometheus_client import Counter, Histogram

logger = logging.getLogger(__name__)

# Deliveries that ended a transition: the provider accepted (successful), refused for good
# or too often (failed), or is tried again later (retried).
DELIVERIES = Counter(
    "signal_deliveries_total",
    "Delivery attempts by channel and outcome (successful, failed, retried).",
    ["channel", "outcome"],
)
# From 5 ms (a local provider, a kept-alive HTTP/2 stream) to 10 s (a provider's timeout).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROVIDER_LATENCY = Histogram(
    "signal_provider_latency_seconds",
    "Time a provider took to answer one message's send, by channel.",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
API_REQUESTS = Counter(
    "signal_api_requests_total",
    "Requests to /api/v1/ by view (URL name) and response status.",
    ["view", "status"],
)

SUCCESSFUL, FAILED, RETRIED = "successful", "failed", "retried"
# What record_results counts (a message's new status, or "retry") -> the metric's outcome.
_OUTCOME_OF = {"successful": SUCCESSFUL, "failed": FAILED, "retry": RETRIED}


def observe_batch(messages, results: dict, outcomes: Tally | None = None) -> None:
    """Counts one recorded batch: DELIVERIES per (channel, outcome) from each message's new
    status (`messages` carry `channel` and `status` after record_results ran their
    transitions; pending again means retried), PROVIDER_LATENCY from each result's
    latency_ms. `outcomes` (status or "retry" -> count), record_results' own tally, is the
    check: when the per-channel counts do not add up to it (messages without a channel), the
    rest is counted under channel "unknown". Never raises: metrics must not fail a batch."""
    try:
        _observe_batch(messages, results, outcomes)
    except Exception:
        logger.exception("delivery metrics not recorded")


def _observe_batch(messages, results: dict, outcomes: Tally | None) -> None:
    counts: Tally = Tally()
    latencies: dict[str, list[float]] = defaultdict(list)
    for message in messages:
        status = message.status
        result = results.get(message.id)
        if status == "pending":  # put back for a retry (or untouched: no failed result)
            if result is None or result.ok:
                continue
            outcome = RETRIED
        elif status == "successful" or status == "failed":
            outcome = str(status)
        else:
            continue
        channel = message.channel or "unknown"
        counts[(channel, outcome)] += 1
        if result is not None and result.latency_ms is not None:
            latencies[channel].append(result.latency_ms / 1000.0)
    if outcomes:
        for status, n in outcomes.items():
            outcome = _OUTCOME_OF.get(status)
            if outcome is None:
                continue
            counted = sum(v for (_c, o), v in counts.items() if o == outcome)
            if n > counted:
                counts[("unknown", outcome)] += n - counted
    for (channel, outcome), n in counts.items():
        DELIVERIES.labels(channel=channel, outcome=outcome).inc(n)
    for channel, values in latencies.items():
        histogram_add(PROVIDER_LATENCY.labels(channel=channel), values)


def histogram_add(child, values: list[float]) -> None:
    """Adds many observations to one histogram child with one write per bucket touched and
    one to its sum (Histogram.observe writes a bucket and the sum per observation).

    Uses prometheus-client 0.26's child layout: `_buckets` (one value per upper bound, not
    cumulative: the exposition accumulates), `_upper_bounds` and `_sum`; tests/operations
    check it."""
    if not values:
        return
    bounds = child._upper_bounds
    per_bucket: Tally = Tally(bisect.bisect_left(bounds, v) for v in values)
    for index, n in per_bucket.items():
        child._buckets[index].inc(n)
    child._sum.inc(sum(values))


class ApiMetricsMiddleware:
    """Counts each /api/v1/ request in API_REQUESTS by its URL name and status (view
    "unmatched" when no URL matched)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path_info.startswith("/api/v1/"):
            match = getattr(request, "resolver_match", None)
            view = (match.url_name if match is not None else None) or "unmatched"
            API_REQUESTS.labels(view=view, status=str(response.status_code)).inc()
        return response
