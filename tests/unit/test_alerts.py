"""deploy/prometheus/alerts.yml: promtool checks the rules and runs their unit tests
(tests/data/alerts_test.yml); the rest checks, without promtool, that each rule is
complete, has a runbook in the README and a test, and reads only series the worker
exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.helpers import ROOT

RULES = ROOT / "deploy/prometheus/alerts.yml"
RULE_TESTS = ROOT / "tests/data/alerts_test.yml"
README = (ROOT / "README.md").read_text()
SEVERITIES = {"critical", "warning"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package prometheus: deploy/install-system-deps.sh)",
)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    res = promtool("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in res.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    res = promtool("test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_is_complete_and_has_a_runbook() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), names
    headings = set(re.findall(r"^#+ (.+)$", README, flags=re.MULTILINE))
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"] and "$labels" in notes["description"], name
        # A GitHub anchor: the heading lower-cased (an alert's name has no spaces).
        assert notes["runbook_url"] == f"README.md#{name.lower()}", name
        assert name in headings, f"README has no runbook heading for {name}"


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert fires == names, names ^ fires
    assert quiet == names, names ^ quiet


def exported_samples() -> set[str]:
    """The sample names a worker process and its supervisor export."""
    import riverbed.supervisor.gateway
    from riverbed.serving.metrics import RiverbedMetrics

    metrics = RiverbedMetrics.create(CollectorRegistry())
    quality = {"metric": {"name": "ROCAUC", "value": 0.9}, "rolling": {"name": "ROCAUC",
               "value": 0.8, "window": 1000}, "learned": 5, "drifts": 0}  # fmt: skip
    partition = {
        "events": 10, "learned": 5, "replayed": 0, "pending": 5, "snapshot_age_s": 3.0,
        "snapshot_bytes": 100, "pending_bytes": 50, "features": 4, "features_dropped": 0,
        "rollbacks": 0, "promotions": 0, "labels": {"joined": 5}, "drifts": 0,
        "champion": "logreg", "candidates": {"logreg": quality, "hoeffding": quality},
    }  # fmt: skip
    doc = {"partitions": {"0": partition}, "dead_letters": {"quarantine": 1}, "ready": True}
    metrics.register_collector(lambda: doc, lambda p: 7)
    names = {s.name for m in metrics.registry.collect() for s in m.samples}
    gateway = Path(riverbed.supervisor.gateway.__file__).read_text()
    names |= set(re.findall(r"add_sample\(\"(riverbed_[a-z_]+)\"", gateway))
    return names


def test_the_rules_read_series_the_worker_exports() -> None:
    exported = exported_samples()
    assert "riverbed_worker_up" in exported  # the supervisor's, read from its source
    for rule in alerts():
        for name in re.findall(r"\briverbed_[a-z_]+", rule["expr"]):
            assert name in exported, f"{rule['alert']}: {name} is not exported"


def test_the_champion_is_exported_once_per_partition() -> None:
    from riverbed import models
    from riverbed.learning.learner import PartitionLearner
    from riverbed.serving.metrics import RiverbedMetrics

    learner = PartitionLearner(models.spec("logreg"), partition=0)
    doc = {"partitions": {"0": learner.describe()}}
    metrics = RiverbedMetrics.create(CollectorRegistry())
    metrics.register_collector(lambda: doc, lambda p: None)
    samples = [s for m in metrics.registry.collect() for s in m.samples]
    champion = [(s.labels, s.value) for s in samples if s.name == "riverbed_champion"]
    assert champion == [({"partition": "0", "model": "logreg"}, 1.0)]


def test_the_label_values_the_rules_name_exist() -> None:
    from riverbed.learning import quality
    from riverbed.learning.labels import LabelOutcome

    text = RULES.read_text()
    for outcome in re.findall(r'outcome[!=]~?"([^"]+)"', text):
        assert set(outcome.split("|")) <= set(LabelOutcome.ALL), outcome
    assert 'stage="quarantine"' in text
    processor = (ROOT / "app/pipeline/processor.py").read_text()
    assert 'stage="quarantine"' in processor
    # The metrics where lower is better, as the champion's rule names them: all of them.
    lower = set()
    for name in [*quality.METRICS, "recall_at_fpr:0.01", "precision_at_recall:0.5"]:
        metric = quality.choose(name).make()
        if not metric.bigger_is_better:
            lower.add(quality.metric_label(metric))
    for regex in re.findall(r'metric[!=]~"([^"]+)"', text):
        assert set(regex.split("|")) == lower, regex


def test_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == [RULES.name]  # next to prometheus.yml
