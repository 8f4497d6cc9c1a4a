"""Issue 16 item 5 through the real broker: ``riverbed export`` and ``riverbed inspect``
read a stopped worker's snapshots; ``GET /models/<p>/model`` serves the live model
behind ``RIVERBED_HTTP_TOKEN``. The exported models load in a Python without riverbed
and predict exactly as the live worker's and as an offline replay of each partition."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from river import datasets

from riverbed import models
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    Worker,
    consume,
    riverbed,
    riverbed_env,
    total,
)
from tests.plain_python import predict_without_riverbed

N = 300
TOKEN = "s3cret-export-token"
WORKER = {"partitions": 2, "snapshot_interval": 0.5, "snapshot_key": "export-key",
          "http_token": TOKEN, "model": "logreg"}  # fmt: skip


def fetch(worker: Worker, path: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of a GET, with ``Authorization: Bearer token``."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def snapshotted(worker: Worker) -> bool:
    parts = worker.models()["partitions"]
    return (
        total(worker, "events") == N
        and len(parts) == 2
        and all(p["snapshot_offset"] == p["last_offset"] for p in parts.values())
    )


def test_export_and_inspect_a_stopped_worker_s_model(
    kafka: str, names: Names, start_worker: Any, tmp_path: Path
) -> None:
    worker = start_worker(**WORKER)
    env = riverbed_env(kafka, names, **WORKER)
    sent = riverbed("produce", "--dataset", "phishing", "--limit", str(N), env=env)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: snapshotted(worker), timeout=RECV_TIMEOUT_S, what="every event snapshotted")
    offsets = {int(p): v["snapshot_offset"] for p, v in worker.models()["partitions"].items()}

    # The live model: the token is required (compared in constant time by the worker).
    assert fetch(worker, "/models/0/model", None)[0] == 401
    assert fetch(worker, "/models/0/model", "wrong")[0] == 401
    assert fetch(worker, "/models/7/model", TOKEN)[0] == 404
    live = {}
    for p in (0, 1):
        status, headers, body = fetch(worker, f"/models/{p}/model", TOKEN)
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        assert int(headers["X-Riverbed-Events-Offset"]) == offsets[p]
        live[p] = tmp_path / f"live-p{p}.pkl"
        live[p].write_bytes(body)
    # What POST /predict answers now, at the same offsets, for the probes below.
    probe_x = json.loads(
        json.dumps([x for x, _ in itertools.islice(datasets.Phishing(), N, N + 40)])
    )
    answered = {}
    for p in (0, 1):
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}/predict?partition={p}",
            data=orjson.dumps([{"x": x} for x in probe_x]),
            headers={"Authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            answered[p] = orjson.loads(r.read())
        assert {a["offset"] for a in answered[p]} == {offsets[p]}
    worker.stop()

    # Export with no worker running.
    exported = {}
    for p in (0, 1):
        exported[p] = tmp_path / f"export-p{p}.pkl"
        out = riverbed("export", "--partition", str(p), "--out", str(exported[p]), env=env)
        assert out.returncode == 0, out.stderr
        assert f"events offset {offsets[p]}, labels offset -1" in out.stdout, out.stdout
    # And as an MLflow model (tests/unit/test_mlflow_export.py loads one with mlflow): the
    # same snapshot, said in its riverbed.json; its pickle is checked with the others below.
    mlflow_dir = tmp_path / "mlflow-p1"
    out = riverbed("export", "-p", "1", "--format", "mlflow", "--out", str(mlflow_dir), env=env)
    assert out.returncode == 0, out.stderr
    assert "to the MLflow model " in out.stdout and "mlflow.pyfunc.load_model" in out.stdout
    info = json.loads((mlflow_dir / "data" / "riverbed.json").read_text())
    assert (info["partition"], info["events_offset"], info["labels_offset"]) == (1, offsets[1], -1)
    assert (mlflow_dir / "MLmodel").read_text().startswith("flavors:\n  python_function:\n")
    wrong = riverbed("export", "-p", "0", "--out", str(tmp_path / "no.pkl"),
                     env={**env, "RIVERBED_SNAPSHOT_KEY": "not-the-key"})  # fmt: skip
    assert wrong.returncode == 2 and "RIVERBED_SNAPSHOT_KEY" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "no.pkl").exists()

    # The reference: each partition's events replayed in offset order through plain River.
    by_part: dict[int, list[Any]] = defaultdict(list)
    for r in consume(kafka, names.topic("events"), N):
        by_part[r.partition].append(r)
    probes = [
        (x, y)
        for x, y in json.loads(json.dumps(list(itertools.islice(datasets.Phishing(), N, N + 40))))
    ]
    expected = {}
    for p, records in by_part.items():
        model = models.build("logreg")
        for r in sorted(records, key=lambda r: r.offset):
            event = orjson.loads(r.value)
            model.learn_one(event["x"], event["y"])
        expected[p] = [(model.predict_one(x), model.predict_proba_one(x)) for x, _ in probes]
    jobs = [(path, "classification", probes) for p in (0, 1) for path in (exported[p], live[p])]
    jobs.append((mlflow_dir / "data" / "model.pkl", "classification", probes))
    got = predict_without_riverbed(jobs, tmp_path)
    assert got[4]["before"] == expected[1], "partition 1: the MLflow model's pickle != replay"
    for i, p in enumerate((0, 1)):
        assert got[2 * i]["before"] == expected[p], f"partition {p}: export != replay"
        assert got[2 * i + 1]["before"] == expected[p], f"partition {p}: live != replay"
        # The exported model, loaded without riverbed, predicts what /predict answered.
        assert [{str(k).lower(): v for k, v in proba.items()} for _y, proba in expected[p]] == [
            a["proba"] for a in answered[p]
        ], f"partition {p}: export != /predict"

    text = riverbed("inspect", "--partition", "1", env=env)
    assert text.returncode == 0, text.stderr
    for part in ("partition 1: logreg (classification)",
                 "pipeline      MixedScaler(scale='standard') | LogisticRegression(",
                 f"offsets       events {offsets[1]}, labels -1", "metric        Accuracy",
                 f"in {names.snapshots}", "the largest by |w|"):  # fmt: skip
        assert part in text.stdout, (part, text.stdout)
    doc = orjson.loads(riverbed("inspect", "-p", "1", "--json", env=env).stdout)
    assert doc["snapshot"]["events_offset"] == offsets[1]
    assert doc["learned"] == len(by_part[1]) and len(doc["structure"]["linear"]["top_weights"]) > 0
