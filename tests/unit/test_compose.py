"""docker-compose.yml, checked statically (no Docker engine here)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_ports(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "worker", "prometheus"} <= set(services)
    assert "127.0.0.1:9092:9092" in services["kafka"]["ports"]
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
    assert "6066" in services["worker"]["expose"]


def test_kafka_image_matches_the_local_broker_version(compose: dict) -> None:
    from riverbed.devtools.broker import kafka_version

    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_worker_is_built_from_the_project_and_configured(compose: dict) -> None:
    from riverbed.config import SPECS, Settings

    worker = compose["services"]["worker"]
    assert worker["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    env = {k: str(v) for k, v in worker["environment"].items()}
    known = {s.env for s in SPECS}
    assert set(env) <= known
    Settings.from_env(env)  # every value is valid
    internal = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["RIVERBED_BROKER"].removeprefix("kafka://") in internal


def test_mounted_files_exist(compose: dict) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), src


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with prometheus")
def test_prometheus_config_is_valid() -> None:
    res = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    text = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert re.search(r"port:\s*6066", text)


def test_grafana_dashboard_queries_metrics_the_worker_exports(compose: dict) -> None:
    import json

    from prometheus_client import CollectorRegistry

    from riverbed.serving.metrics import RiverbedMetrics

    assert "127.0.0.1:3000:3000" in compose["services"]["grafana"]["ports"]
    dash = json.loads((ROOT / "deploy/grafana/dashboards/riverbed.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set(re.findall(r"riverbed_[a-z_]+", " ".join(exprs)))
    readme = (ROOT / "README.md").read_text()
    metrics = RiverbedMetrics.create(CollectorRegistry())
    exported = {m.name for m in metrics.registry.collect()}
    for name in used:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert base in exported or f"`{name}`" in readme or f"`{base}_total`" in readme, name
