"""The /metrics document: the metric files of every process (multiprocess mode) or this
process's registry (single-process mode), then the probe gauges read now."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from core.metrics_process import multiprocess_dir

from .collector import ProbeCollector


def render() -> tuple[bytes, str]:
    if multiprocess_dir():
        stored = CollectorRegistry()
        multiprocess.MultiProcessCollector(stored)
    else:
        stored = REGISTRY
    probed = CollectorRegistry(auto_describe=False)
    probed.register(ProbeCollector())
    return generate_latest(stored) + generate_latest(probed), CONTENT_TYPE_LATEST
