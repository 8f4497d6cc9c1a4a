"""Issue 16 item 5 without a broker: the exported model loads where riverbed does not
and predicts as the learner; inspection; reading the newest snapshot that verifies;
the ``export`` and ``inspect`` commands."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from river import linear_model, preprocessing

from riverbed import models
from riverbed.checkpoint.snapshots import SnapshotCodec
from riverbed.cli import main
from riverbed.config import Settings
from riverbed.exceptions import ConfigError
from riverbed.learning.learner import PartitionLearner
from riverbed.models.features import MixedScaler
from riverbed.records import Event
from riverbed.serving import export
from tests.plain_python import predict_without_riverbed
from tests.unit.test_features import mixed_stream

CATALOG = ["logreg", "linreg", "hst", "hoeffding", "arf"]


def learned(name: str, n: int = 600, partition: int = 0) -> PartitionLearner:
    """A learner of catalog model ``name`` after ``n`` mixed events, labels inline."""
    learner = PartitionLearner(models.spec(name), partition=partition)
    for i, (x, y, amount) in enumerate(mixed_stream(n)):
        label = amount if learner.task == "regression" else y
        learner.process_event(Event(f"e{i}", x, label), offset=i, ts_ms=i)
    return learner


def probes(task: str) -> list[tuple[dict[str, Any], Any]]:
    """Events the model has not seen, an unseen string value and feature among them."""
    out = []
    for x, y, amount in mixed_stream(40, seed=99):
        out.append((x, amount if task == "regression" else y))
    out[3][0]["country"] = "NZ"
    out[5][0]["brand_new"] = 3.5
    return out


@pytest.mark.process  # predict_without_riverbed runs another Python
def test_an_exported_catalog_model_predicts_as_the_learner_without_riverbed(
    tmp_path: Path,
) -> None:
    """Every catalog model: the pickle names no riverbed module, loads in a Python where
    ``import riverbed`` fails, predicts exactly what the learner predicts, and after
    learning more, exactly what the live model would after learning the same."""
    learners = {name: learned(name) for name in CATALOG}
    jobs = []
    for name, learner in learners.items():
        exported = export.dumps(learner.model)
        assert b"riverbed" not in exported.blob
        assert "riverbed" not in exported.needs and exported.extra == []
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(exported.blob)
        jobs.append((path, learner.task, probes(learner.task)))
    results = predict_without_riverbed(jobs, tmp_path)
    for (name, learner), got in zip(learners.items(), results, strict=True):
        task = learner.task
        xs = [x for x, _ in probes(task)]
        expected = [learner.predict_one(x) for x in xs]
        before = [(y, p) if task == "classification" else (y, None) for y, p in got["before"]]
        assert before == expected, name
        live = copy.deepcopy(learner.model)
        for x, y in probes(task):
            live.learn_one(x) if task == "anomaly" else live.learn_one(x, y)
        if task == "classification":
            after = [(live.predict_one(x), live.predict_proba_one(x)) for x in xs]
        elif task == "regression":
            after = [(live.predict_one(x), None) for x in xs]
        else:
            after = [(live.score_one(x), None) for x in xs]
        assert got["after"] == after, name
    assert learners["logreg"].learned == 600


def test_a_mixed_scaler_inside_a_wrapper_is_written_as_river_s_composition() -> None:
    """The pickler converts a MixedScaler that :func:`export.portable` does not reach."""
    model = preprocessing.TargetStandardScaler(MixedScaler() | linear_model.LinearRegression())
    for x, _, amount in mixed_stream(200):
        model.learn_one(x, amount)
    exported = export.dumps(model)
    assert b"riverbed" not in exported.blob
    loaded = pickle.loads(exported.blob)
    for x, _, _ in mixed_stream(30, seed=5):
        assert loaded.predict_one(x) == model.predict_one(x)


class Custom(linear_model.LogisticRegression):
    """A user's own model class (module:factory)."""


def test_a_custom_model_names_the_modules_loading_it_needs() -> None:
    exported = export.dumps(Custom())
    assert exported.extra == ["tests"]
    assert "these modules import: tests" in exported.loads_with


def test_inspection_of_every_catalog_model() -> None:
    docs = {name: export.inspection(learned(name, 400)) for name in CATALOG}
    for name, doc in docs.items():
        assert doc["model"] == name and doc["events"] == 400 and doc["learned"] == 400
        json.dumps(doc)  # machine-readable as it is
    lin = docs["logreg"]["structure"]["linear"]
    assert len(lin["top_weights"]) == export.TOP_WEIGHTS < lin["weights"]
    sizes = [abs(w) for _, w in lin["top_weights"]]
    assert sizes == sorted(sizes, reverse=True)
    assert docs["logreg"]["structure"]["steps"][0] == "MixedScaler(scale='standard')"
    assert docs["hoeffding"]["structure"]["tree"]["nodes"] >= 1
    assert len(docs["arf"]["structure"]["forest"]["trees"]) == 10
    assert docs["hst"]["structure"]["half_space_trees"]["trees"] == 10
    text = export.format_inspection(docs["arf"])
    assert "forest        10 trees, 0 drifts" in text and "tree 9" in text
    assert "depth" in export.format_inspection(docs["hoeffding"])
    assert "of height 8, window 250" in export.format_inspection(docs["hst"])


# -- the newest snapshot that verifies, with Kafka faked ----------------------------


def records_of(learners: list[PartitionLearner], key: bytes, chunk_bytes: int) -> list[Any]:
    """The snapshot records of the learners, in order, as aiokafka hands them out."""
    codec = SnapshotCodec(key, chunk_bytes)
    out = []
    for learner in learners:
        for k, v, h in codec.encode(learner):
            out.append(SimpleNamespace(offset=len(out), key=k, value=v, headers=h))
    return out


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The snapshots topic's partitions as the test sets them."""
    state: dict[str, Any] = {"partitions": 2, "records": []}

    async def preflight(settings: Settings) -> None:
        return None

    async def count(settings: Settings, topic: str) -> int | None:
        return state["partitions"]

    async def read(bootstrap: str, topic: str, parts: Any, **client: Any) -> Any:
        return {p: state["records"] for p in parts}

    monkeypatch.setattr("riverbed.kafka.security.preflight", preflight)
    monkeypatch.setattr(export, "_partition_count", count)
    monkeypatch.setattr(export, "read_snapshot_partitions", read)
    return state


def settings(**env: str) -> Settings:
    return Settings.from_env({"RIVERBED_APP_ID": "fraud", **env})


def test_the_newest_chunked_snapshot_that_verifies_is_read(fake_kafka: dict[str, Any]) -> None:
    old, new = learned("logreg", 100, partition=1), learned("logreg", 300, partition=1)
    fake_kafka["records"] = records_of([old, new], b"k", chunk_bytes=500)
    snap = asyncio.run(export.latest_snapshot(settings(RIVERBED_SNAPSHOT_KEY="k"), 1))
    assert snap.meta["chunks"] > 1 and snap.meta["events_offset"] == 299
    assert snap.learner.learned == 300 and snap.topic == "riverbed.snapshots.fraud"
    x = mixed_stream(1, seed=3)[0][0]
    assert snap.learner.predict_one(x) == new.predict_one(x)


def test_a_wrong_key_names_the_setting(fake_kafka: dict[str, Any]) -> None:
    fake_kafka["records"] = records_of([learned("logreg", 10, partition=1)], b"k", 500)
    with pytest.raises(ConfigError, match="RIVERBED_SNAPSHOT_KEY verifies none of the 1"):
        asyncio.run(export.latest_snapshot(settings(RIVERBED_SNAPSHOT_KEY="other"), 1))


def test_no_snapshot_and_no_such_partition_say_so(fake_kafka: dict[str, Any]) -> None:
    with pytest.raises(export.NoSnapshot, match="partition 1 has no snapshot in"):
        asyncio.run(export.latest_snapshot(settings(RIVERBED_SNAPSHOT_KEY="k"), 1))
    with pytest.raises(export.NoSnapshot, match=r"has partitions 0\.\.1, not 2"):
        asyncio.run(export.latest_snapshot(settings(RIVERBED_SNAPSHOT_KEY="k"), 2))
    fake_kafka["partitions"] = None
    with pytest.raises(export.NoSnapshot, match=r"no snapshots topic riverbed\.snapshots\.fraud"):
        asyncio.run(export.latest_snapshot(settings(RIVERBED_SNAPSHOT_KEY="k"), 0))


def test_without_a_key_the_key_file_is_used_and_never_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "KEY_FILE", tmp_path / "snapshot.key")
    with pytest.raises(ConfigError, match="RIVERBED_SNAPSHOT_KEY is not set"):
        export.snapshot_key(settings())
    assert not (tmp_path / "snapshot.key").exists()
    (tmp_path / "snapshot.key").write_text("abc\n")
    assert export.snapshot_key(settings()) == b"abc"


# -- the commands ------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, fake_kafka: dict[str, Any]) -> dict[str, Any]:
    for k in list(os.environ):
        if k.startswith("RIVERBED_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("RIVERBED_SNAPSHOT_KEY", "k")
    fake_kafka["records"] = records_of([learned("logreg", 200)], b"k", 100_000)
    return fake_kafka


def test_export_writes_the_model_and_says_what_it_exported(
    cli_env: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--partition", "0"]) == 0
    said = capsys.readouterr().out
    assert "exported logreg (champion) of partition 0 to model-p0.pkl" in said
    assert "events offset 199, labels offset -1" in said and "200 labels learned" in said
    assert "loads with pickle where river" in said
    model = pickle.loads((tmp_path / "model-p0.pkl").read_bytes())
    assert list(model.steps) == ["TransformerUnion", "LogisticRegression"]
    assert [p.name for p in tmp_path.iterdir()] == ["model-p0.pkl"]  # no temporary left


def test_export_to_stdout_reports_on_stderr(
    cli_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=out, isatty=lambda: False))
    assert main(["export", "-p", "0", "--out", "-"]) == 0
    assert pickle.loads(out.getvalue()).predict_one({"amount": 3.0}) in (True, False)
    assert "to stdout" in capsys.readouterr().err


def test_export_with_a_wrong_key_fails_naming_it(
    cli_env: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RIVERBED_SNAPSHOT_KEY", "wrong")
    assert main(["export", "--partition", "0"]) == 2
    assert "RIVERBED_SNAPSHOT_KEY verifies none" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_inspect_prints_the_parts_a_user_wants(
    cli_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--partition", "0"]) == 0
    text = capsys.readouterr().out
    for part in ("partition 0: logreg (classification)", "pipeline      MixedScaler",
                 "events        200 (200 learned", "metric        Accuracy",
                 "snapshot      ", "s ago) in riverbed.snapshots.", "weights       ",
                 "the largest by |w|"):  # fmt: skip
        assert part in text, part
    assert main(["inspect", "--partition", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["snapshot"]["events_offset"] == 199 and doc["structure"]["linear"]["weights"] > 0


def test_export_format_mlflow_writes_a_directory(
    cli_env: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--format mlflow``: an MLflow model directory (tests/unit/test_mlflow_export.py
    checks what is in it), by default model-p<P>-mlflow; never stdout, never into a
    file or a directory that is not empty (refused before the snapshot is read)."""
    monkeypatch.chdir(tmp_path)
    assert main(["export", "-p", "0", "--format", "mlflow"]) == 0
    said = capsys.readouterr().out
    assert "exported logreg (champion) of partition 0 to the MLflow model model-p0-mlflow (" in said
    assert "loads with mlflow.pyfunc.load_model('model-p0-mlflow') where mlflow, pandas" in said
    out = tmp_path / "model-p0-mlflow"
    info = json.loads((out / "data" / "riverbed.json").read_text())
    assert info["task"] == "classification" and info["role"] == "champion"
    assert info["events_offset"] == 199 and info["labels_learned"] == 200
    assert info["version"] is None and info["topic"] == "riverbed.snapshots.riverbed"
    model = pickle.loads((out / "data" / "model.pkl").read_bytes())
    assert list(model.steps) == ["TransformerUnion", "LogisticRegression"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-p0-mlflow"]  # no temporary

    cli_env["records"] = []  # any read of the snapshot now fails: the refusals come first
    assert main(["export", "-p", "0", "-f", "mlflow", "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export", "-p", "0", "-f", "mlflow", "--out", "-"]) == 2
    assert "--format mlflow writes a directory" in capsys.readouterr().err
    (tmp_path / "f.pkl").write_bytes(b"")
    assert main(["export", "-p", "0", "-f", "mlflow", "--out", "f.pkl"]) == 2
    assert "a file exists there" in capsys.readouterr().err


def test_export_format_mlflow_of_a_challenger_names_it_and_the_threshold(
    cli_env: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lineup = (models.spec("logreg"), models.spec("hoeffding"))
    learner = PartitionLearner(lineup[0], partition=0, lineup=lineup, threshold="0.3")
    for i, (x, y, _) in enumerate(mixed_stream(120)):
        learner.process_event(Event(f"e{i}", x, y), offset=i, ts_ms=i)
    cli_env["records"] = records_of([learner], b"k", 100_000)
    out = tmp_path / "h"
    assert main(["export", "-p", "0", "-m", "hoeffding", "-f", "mlflow", "-o", str(out)]) == 0
    assert "exported hoeffding (challenger) of partition 0" in capsys.readouterr().out
    info = json.loads((out / "data" / "riverbed.json").read_text())
    assert (info["model"], info["role"], info["task"]) == ("hoeffding", "challenger",
                                                           "classification")  # fmt: skip
    assert info["threshold"] == {"rule": "fixed", "target": 0.3, "value": 0.3}
    model = pickle.loads((out / "data" / "model.pkl").read_bytes())
    x = mixed_stream(1, seed=4)[0][0]
    assert model.predict_proba_one(x) == learner.candidate("hoeffding").model.predict_proba_one(x)
