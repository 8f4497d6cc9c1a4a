"""Issue 29 item 4, MLflow interop: ``riverbed export --format mlflow`` writes an MLflow
model directory (the python_function flavour, a loader module around the portable River
pickle) without mlflow, which ``mlflow.pyfunc.load_model(DIR).predict(DataFrame)``
loads where riverbed is not installed and which predicts what the River model does."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import sys
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from riverbed.learning.learner import PartitionLearner
from riverbed.serving import export, pyfunc_loader
from riverbed.serving.mlflow_model import (
    LOADER_MODULE,
    ExportError,
    check_out,
    to_yaml,
    write_mlflow_model,
)
from tests.mlflow_python import CannotInstall, mlflow_python, predict_with_mlflow
from tests.unit.test_export import CATALOG, learned, probes

INFO = {"model": "logreg", "partition": 0}


def write(learner: PartitionLearner, out: Path) -> Path:
    info = {**INFO, "task": learner.task, "model": learner.spec.name}
    write_mlflow_model(out, export.dumps(learner.model), info)
    return out


def expected(learner: PartitionLearner, xs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The River model's own answers, in the loader's records (see pyfunc_loader)."""
    model, task = learner.model, learner.task
    if task == "regression":
        return [{"y_pred": model.predict_one(x)} for x in xs]
    if task == "anomaly":
        return [{"score": model.score_one(x)} for x in xs]
    probas = [model.predict_proba_one(x) for x in xs]
    classes = sorted({c for p in probas for c in p})
    return [
        {"y_pred": model.predict_one(x), **{f"proba_{c}": p.get(c, 0.0) for c in classes}}
        for x, p in zip(xs, probas, strict=True)
    ]


def rows(task: str) -> list[dict[str, Any]]:
    """Probes as a DataFrame's rows: a missing feature is None (NaN in the frame)."""
    xs = [x for x, _ in probes(task)]
    xs[7] = {**xs[7], "country": None}  # a null: left out, as riverbed leaves it out
    return xs


def without_nulls(x: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in x.items() if v is not None}


def test_the_directory_is_an_mlflow_model(tmp_path: Path) -> None:
    """MLmodel (parsed as YAML), the loader, the pickle, riverbed.json and the three
    environment files, as mlflow.pyfunc.save_model(loader_module=...) writes them."""
    out = write(learned("logreg", 50), tmp_path / "m")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["MLmodel", f"code/{LOADER_MODULE}.py", "conda.yaml", "data/model.pkl",
                     "data/riverbed.json", "python_env.yaml", "requirements.txt"]  # fmt: skip
    mlmodel = yaml.safe_load((out / "MLmodel").read_text())
    flavour = mlmodel["flavors"]["python_function"]
    assert flavour["loader_module"] == LOADER_MODULE
    assert flavour["code"] == "code" and flavour["data"] == "data"
    assert flavour["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert flavour["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert set(mlmodel) == {"flavors", "metadata", "model_size_bytes", "model_uuid",
                            "utc_time_created"}  # fmt: skip
    assert "signature" not in mlmodel  # River takes any features: see mlflow_model's doc
    assert mlmodel["metadata"]["riverbed"]["task"] == "classification"
    assert len(mlmodel["model_uuid"]) == 32
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert reqs[:2] == ["mlflow>=2.10", "pandas"]
    assert f"river=={version('river')}" in reqs
    assert not any(r.startswith("riverbed") for r in reqs)
    env = yaml.safe_load((out / "python_env.yaml").read_text())
    assert env["python"] == flavour["python_version"]
    assert env["dependencies"] == ["-r requirements.txt"]
    conda = yaml.safe_load((out / "conda.yaml").read_text())
    assert conda["dependencies"][-1] == {"pip": reqs}
    assert conda["dependencies"][0] == f"python={flavour['python_version']}"
    info = json.loads((out / "data" / "riverbed.json").read_text())
    assert info == {"model": "logreg", "partition": 0, "task": "classification"}
    loader = (out / "code" / f"{LOADER_MODULE}.py").read_text()
    assert loader == Path(pyfunc_loader.__file__).read_text()
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse(loader))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= sys.stdlib_module_names | {"__future__"}, imported


def test_to_yaml_round_trips_through_yaml() -> None:
    doc = {"a": [{"pip": ["x>=1", "-r r.txt"]}, "3.10", None, True, 1.5], "b": {},
           "c": {"d: e": "it's \"quoted\"\n", "f": []}, "version": None}  # fmt: skip
    assert yaml.safe_load(to_yaml(doc)) == doc
    assert yaml.safe_load(to_yaml([float("inf"), -float("inf")])) == [float("inf"), -float("inf")]
    assert math.isnan(yaml.safe_load(to_yaml({"x": float("nan")}))["x"])


def import_loader_without_riverbed(out: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The model's loader module, imported from its file with every riverbed module
    hidden (``import riverbed`` and unpickling anything of it fail)."""
    for name in [m for m in sys.modules if m.split(".")[0] == "riverbed"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "riverbed", None)
    path = out / "code" / f"{LOADER_MODULE}.py"
    spec = importlib.util.spec_from_file_location(f"{LOADER_MODULE}_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ImportError):
        import riverbed  # noqa: F401
    return module


def test_the_loader_predicts_what_the_river_model_predicts_without_riverbed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every catalog model: the loader of the directory, imported from it with riverbed
    hidden, answers a list of feature dicts (nulls left out) as the River model does."""
    learners = {name: learned(name, 300) for name in CATALOG}
    outs = {name: write(learner, tmp_path / name) for name, learner in learners.items()}
    references = {name: expected(lr, [without_nulls(x) for x in rows(lr.task)])
                  for name, lr in learners.items()}  # fmt: skip
    loader = import_loader_without_riverbed(tmp_path / "logreg", monkeypatch)
    for name, learner in learners.items():
        model = loader._load_pyfunc(str(outs[name] / "data"))
        assert model.task == learner.task
        got = model.predict(rows(learner.task), params={"ignored": 1})
        assert got == references[name], name
        assert model.predict(rows(learner.task)[0]) == references[name][0]
    classifier = loader._load_pyfunc(str(outs["logreg"] / "data"))
    assert list(references["logreg"][0]) == ["y_pred", "proba_False", "proba_True"]
    with pytest.raises(TypeError, match="a pandas DataFrame"):
        classifier.predict("amount=3")


def test_features_leave_out_what_is_missing() -> None:
    np = pytest.importorskip("numpy")
    row = {"a": np.float64(1.5), "b": np.int64(3), "c": np.bool_(True), "d": np.float64("nan"),
           "e": None, "f": "x", 7: 2.0}  # fmt: skip
    got = pyfunc_loader.features(row)
    assert got == {"a": 1.5, "b": 3, "c": True, "f": "x", "7": 2.0}
    assert [type(v) for v in got.values()] == [float, int, bool, str, float]


def test_an_existing_directory_is_refused_unless_empty(tmp_path: Path) -> None:
    learner = learned("linreg", 20)
    (tmp_path / "empty").mkdir()
    write(learner, tmp_path / "empty")  # an empty directory is taken
    assert (tmp_path / "empty" / "MLmodel").exists()
    with pytest.raises(ExportError, match="exists and is not empty"):
        write(learner, tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="a file exists there"):
        check_out(tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"]  # no temporary


@pytest.mark.process  # a venv made with pip, and mlflow run in it
@pytest.mark.timeout(1200)
def test_mlflow_loads_the_directory_without_riverbed_and_predicts_as_river(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance test: in a venv with mlflow, pandas and river but not riverbed,
    ``mlflow.pyfunc.load_model(DIR).predict(pandas.DataFrame(rows))`` answers what each
    catalog model answers (rows with missing features: NaN in the frame)."""
    try:
        python, took = mlflow_python()  # runs pip: subprocess.run, sys.executable
    except CannotInstall as exc:
        pytest.skip(f"mlflow cannot be installed here: {exc}")
    learners = {name: learned(name, 300) for name in CATALOG}
    jobs = [(write(lr, tmp_path / name), rows(lr.task)) for name, lr in learners.items()]
    got = predict_with_mlflow(python, jobs, tmp_path)
    with capsys.disabled():
        made = f"made now in {took:.1f} s" if took is not None else "reused"
        print(f"\n  mlflow venv {made}: mlflow {got['mlflow']}, pandas {got['pandas']}")
    for (name, learner), result in zip(learners.items(), got["results"], strict=True):
        want = expected(learner, [without_nulls(x) for x in rows(learner.task)])
        assert result["records"] == want, name
        assert result["columns"] == list(want[0]), name
        assert result["metadata"]["riverbed"]["task"] == learner.task
