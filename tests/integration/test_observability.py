"""Issue 5 acceptance: Prometheus, drift events on the metrics topic, the live page."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import grafana
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    consume,
    free_port,
    produce,
    riverbed,
    riverbed_env,
)

PROMETHEUS_TIMEOUT_S = 90.0
CHROMIUM_TIMEOUT_S = 90.0
# Dashboard series the test's worker (one process) cannot have, and why.
NOT_FROM_ONE_PROCESS = {
    "riverbed_worker_up": "the supervisor's (riverbed worker --processes N, N > 1)",
    "riverbed_worker_restarts_total": "the supervisor's (riverbed worker --processes N, N > 1)",
}


def _api(port: int, path: str, **params: str) -> list[Any]:
    """A Prometheus API answer's data; a query Prometheus rejects fails the test."""
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        pytest.fail(f"Prometheus refused {params}: {exc.read().decode(errors='replace')}")
    data = body["data"]
    return list(data["result"] if path == "query" else data)


def _dashboard_values(port: int, dash: dict[str, Any]) -> dict[str, list[str]]:
    """Each template variable's values, resolved in order as Grafana does (label_values)."""
    values: dict[str, list[str]] = {}
    current: dict[str, str] = {}  # what a dashboard opened as saved uses: first, or All
    for var in grafana.variables(dash):
        m = grafana.LABEL_VALUES.fullmatch(grafana.variable_query(var))
        assert m, var["name"]
        match = grafana.substitute(m["match"], current)
        found = _api(port, f"label/{m['label']}/values", **{"match[]": match})
        assert found, f"${var['name']}: no value for {match}"
        values[var["name"]] = found
        current[var["name"]] = var["allValue"] if var.get("includeAll") else found[0]
    return values


def _check_dashboard(port: int) -> None:
    """Every panel's every query returns a series: with the variables as saved (All),
    with each variable's first value, and for the repeated row with each of its values."""
    dash = grafana.load()
    values = _dashboard_values(port, dash)
    saved = {
        v["name"]: v["allValue"] if v.get("includeAll") else values[v["name"]][0]
        for v in grafana.variables(dash)
    }
    first = {name: found[0] for name, found in values.items()}
    skipped = set()
    for t in grafana.targets(dash):
        if any(re.search(rf"\b{name}\b", t.expr) for name in NOT_FROM_ONE_PROCESS):
            skipped.add(t.expr)
            continue
        if t.repeat:
            cases = [{**base, t.repeat: v} for base in (saved, first) for v in values[t.repeat]]
        else:
            # a champion is one model: a model picked at random may have no series
            cases = [saved, {**first, "model": saved["model"]}]
        for case in cases:
            expr = grafana.substitute(t.expr, case)
            wait_for(
                functools.partial(_api, port, "query", query=expr),
                timeout=PROMETHEUS_TIMEOUT_S,
                what=f"a series for the panel {t.panel!r}: {expr}",
            )
    assert len(skipped) == len(NOT_FROM_ONE_PROCESS), skipped
    # The exceptions are true: this worker has none of these series.
    absent = "|".join(NOT_FROM_ONE_PROCESS)
    assert _api(port, "query", query=f'{{__name__=~"{absent}"}}') == []


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
    except OSError:
        return []
    return body["data"]["result"] if body.get("status") == "success" else []


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="make setup installs prometheus")
def test_a_real_prometheus_scrapes_the_worker(
    kafka: str, names: Names, start_worker: Any, output_dir: Path
) -> None:
    # Two candidates: a champion and a challenger, for the dashboard's model panels.
    worker = start_worker(wait=False, partitions=2, model="logreg,hoeffding",
                          snapshot_interval=1)  # fmt: skip
    # Prometheus starts scraping ~5 s after it starts (its scrape manager applies new
    # targets on a 5 s tick): started now, that overlaps the worker's start and the stream.
    prom_port = free_port()
    config = output_dir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: riverbed\n    static_configs: [{{targets: ['127.0.0.1:{worker.port}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={output_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=(output_dir / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _scraped_by_prometheus(kafka, names, worker, prom_port)
    finally:
        prom.terminate()
        prom.wait(30)


def _scraped_by_prometheus(kafka: str, names: Names, worker: Any, prom_port: int) -> None:
    worker.wait_ready()
    assert (
        riverbed(
            "produce", "--dataset", "phishing", env=riverbed_env(kafka, names, partitions=2)
        ).returncode
        == 0
    )
    wait_for(
        lambda: sum(p["events"] for p in worker.models()["partitions"].values()) == 1250,
        timeout=RECV_TIMEOUT_S,
        what="1250 events predicted",
    )
    # A label that is not a JSON object: a dead letter, for the dashboard's panel.
    produce(kafka, names.topic("labels"), [(b"not-an-object", b"[]", 0)])
    wait_for(
        lambda: worker.models().get("dead_letters"), timeout=RECV_TIMEOUT_S, what="a dead letter"
    )

    text = worker.get("/metrics")[1]
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, text=True, capture_output=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "riverbed_end_to_end_latency_seconds_bucket" in text

    # Scraped since the worker started: the sum counts every event once a scrape after
    # the last one came.
    def scraped(expr: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in _query(prom_port, expr)]

    wait_for(lambda: [v for _m, v in scraped("sum(riverbed_events_total)")] == [1250.0],
             timeout=PROMETHEUS_TIMEOUT_S,
             what="Prometheus to scrape the worker after its 1250 events")  # fmt: skip
    # The champion's cumulative metric, as /models has it (the stream is over: it holds).
    champion = (
        'riverbed_model_metric{metric="Accuracy",window="all"}'
        " * on (instance, partition, model) riverbed_champion"
    )
    doc = worker.models()["partitions"]
    want = {p: d["metric"]["value"] for p, d in doc.items()}
    assert len(want) == 2, want

    def per_partition() -> list[tuple[dict[str, str], float]]:
        series = scraped(champion)  # every series: one per partition, none more
        return series if {m["partition"]: v for m, v in series} == want else []

    series = wait_for(per_partition, timeout=PROMETHEUS_TIMEOUT_S,
                      what="the per-partition metric in Prometheus, as /models has it")  # fmt: skip
    assert len(series) == 2, series
    _check_dashboard(prom_port)


def test_drift_is_detected_near_the_drift_point_and_the_metric_recovers(
    kafka: str, names: Names, start_worker: Any
) -> None:
    drift_at, n = 6000, 16000
    start_worker(partitions=1, metrics_interval=1)
    res = riverbed(
        "produce",
        "--dataset",
        "drift",
        "--limit",
        str(n),
        "--drift-at",
        str(drift_at),
        "--key",
        "none",
        env=riverbed_env(kafka, names, partitions=1),
    )
    assert res.returncode == 0, res.stderr
    preds = sorted(
        (orjson.loads(r.value) for r in consume(kafka, names.topic("predictions"), n)),
        key=lambda p: p["offset"],
    )

    def accuracy(lo: int, hi: int) -> float:
        window = preds[lo:hi]
        return sum(p["y"] == p["y_pred"] for p in window) / len(window)

    # ConceptDriftStream switches along a sigmoid centred on drift_at (width 500). One
    # partition's predictions equal the offline replay, so these windows are exact:
    # about 70% before, 59% in the switch, 78% once the model has relearned.
    before = accuracy(drift_at - 2000, drift_at - 500)
    dip = accuracy(drift_at - 500, drift_at + 250)
    after = accuracy(n - 3000, n)
    assert dip < before - 0.05, (before, dip)
    assert after > dip + 0.1, (dip, after)

    def drift_events() -> list[dict[str, Any]]:
        records = consume(kafka, names.topic("metrics"), 1, timeout=RECV_TIMEOUT_S)
        events = [orjson.loads(r.value) for r in records]
        return [e for e in events if e["type"] == "drift"]

    drifts = wait_for(
        drift_events, timeout=RECV_TIMEOUT_S, what="drift events on the metrics topic"
    )
    near = [d for d in drifts if drift_at - 500 <= d["events_offset"] <= drift_at + 2500]
    assert near, [d["events_offset"] for d in drifts]
    d = near[0]
    assert d["detector"] == "adwin" and d["partition"] == 0
    assert d["error_after"] > d["error_before"], "the error rose at the drift"

    def periodic_with_latency() -> list[dict[str, Any]]:
        # A periodic record published before the first prediction has no latency yet.
        records = consume(kafka, names.topic("metrics"), 1)
        values = [orjson.loads(r.value) for r in records]
        return [m for m in values if m["type"] == "metrics" and m["latency_ms"]["p99"] is not None]

    wait_for(periodic_with_latency, timeout=RECV_TIMEOUT_S, what="a periodic metrics record")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="make setup installs chromium")
def test_the_live_page_plots_data_in_headless_chromium(
    kafka: str, names: Names, start_worker: Any, output_dir: Path, start_producer: Any
) -> None:
    # Two candidates on a drifting stream: the page draws a series per candidate and
    # partition, and marks the detectors' detections (/models recent_events).
    worker = start_worker(partitions=2, model="logreg,hoeffding", promotion="auto")
    producer = start_producer(
        "--dataset", "drift", "--drift-at", "3000", "--limit", "20000", "--rate", "1500",
        partitions=2,
    )  # fmt: skip
    wait_for(
        lambda: all(p["events"] > 1000 for p in worker.models()["partitions"].values()),
        timeout=RECV_TIMEOUT_S,
        what="both partitions predicting",
    )
    wait_for(
        lambda: [e for e in worker.models()["recent_events"] if e["type"] == "drift"],
        timeout=RECV_TIMEOUT_S,
        what="a drift detection in /models recent_events",
    )
    url = f"http://127.0.0.1:{worker.port}/"

    def history_span() -> float:
        with urllib.request.urlopen(url + "history", timeout=5) as r:
            parts = orjson.loads(r.read())["partitions"]
        spans = [s[-1][0] - s[0][0] for s in parts.values() if s]
        return min(spans) if len(spans) == 2 else 0.0

    # The page is opened after the worker has run a while: it draws /history's past.
    wait_for(lambda: history_span() >= 6, timeout=RECV_TIMEOUT_S, what="6 s of /history")
    opened = time.time()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={output_dir / 'chromium'}",
        "--virtual-time-budget=8000",
        "--window-size=1400,900",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
        check=False,
    ).stdout
    shot = output_dir / "live-page.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", url],
        capture_output=True,
        timeout=CHROMIUM_TIMEOUT_S,
        check=False,
    )
    points = [
        int(n)
        for n in re.findall(r'id="metric"[^>]*data-points="(\d+)"', dom)
        + re.findall(r'data-points="(\d+)"[^>]*id="metric"', dom)
    ]
    assert points and points[0] >= 4, dom[:2000]
    grid = re.search(r'<div[^>]*id="metric"[^>]*>', dom)
    assert grid, dom[:2000]
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', grid.group(0)))
    assert set(attrs["candidates"].split(",")) == {"logreg", "hoeffding"}, attrs
    # a rolling line per candidate and partition, and a dashed cumulative one
    assert int(attrs["series"]) == 8, attrs
    assert int(attrs["drifts"]) >= 1, attrs
    canvases = re.findall(r'<canvas id="metric-(\d+)"[^>]*data-series="(\d+)"', dom)
    assert sorted(canvases) == [("0", "4"), ("1", "4")], canvases
    assert re.search(r"<b>drift</b> detected by (logreg|hoeffding)'s detector", dom), dom[-3000:]
    body = re.search(r"<tbody>(.*?)</tbody>", dom, re.S)
    assert body and body.group(1).count("<tr>") == 2, "one table row per partition"
    events = [int(n) for n in re.findall(r"<tr><td>\d+</td><td>(\d+)</td>", body.group(1))]
    assert len(events) == 2 and all(n > 1000 for n in events), body.group(1)
    assert shot.exists() and shot.stat().st_size > 10_000
    # History from before the page was opened, and one x range for every panel.
    loaded = re.search(r'<body[^>]*data-history="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) >= 10, dom[:500]
    tags = {m.group(1): dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(0)))
            for m in re.finditer(r'<canvas id="([\w-]+)"[^>]*>', dom)}  # fmt: skip
    panels = [tags["metric-0"], tags["metric-1"]]
    assert panels[0]["t0"] == panels[1]["t0"] and panels[0]["t1"] == panels[1]["t1"], panels
    assert float(panels[0]["t0"]) <= opened - 5, (panels, opened)
    for name, a in tags.items():  # y ticks: no label twice
        ticks = a["yticks"].split("|") if a.get("yticks") else []
        assert len(ticks) == len(set(ticks)), (name, ticks)
    producer.terminate()
    producer.wait(30)
