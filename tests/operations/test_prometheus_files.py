"""ops/prometheus/: the alert names the runbooks use, expressions over metrics we export, and
Prometheus' own check (promtool) when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from tests.operations.conftest import heartbeat

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "ops" / "prometheus"
ALERTS = {"SignalQueueBacklogOld", "SignalDeliveryErrorRate", "SignalNoWorkers", "SignalTargetDown"}
PROMTOOL = shutil.which("promtool")


def rules() -> list[dict]:
    document = yaml.safe_load((FILES / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_alerts_are_named_as_the_runbooks_and_link_to_them():
    assert {rule["alert"] for rule in rules()} == ALERTS
    for rule in rules():
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{anchor}"


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_state")
def test_the_alerts_use_only_metrics_we_export():
    heartbeat()
    metrics.DELIVERIES.labels(channel="iOSPush", outcome="successful").inc(0)  # a sample exists
    scraped = Client().get("/metrics").content.decode()
    exported = {
        sample.name
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    for rule in rules():
        names = set(re.findall(r"\b(signal_[a-z_]+)\b", rule["expr"]))
        assert names <= exported, (rule["alert"], names - exported)
    config = yaml.safe_load((FILES / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
def test_promtool_accepts_the_configuration_and_the_rules(tmp_path):
    shutil.copytree(FILES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "metrics_token").write_text("a-token\n")  # the file the config names
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        result = subprocess.run(
            [PROMTOOL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
