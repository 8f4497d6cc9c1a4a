"""Mixed feature types: MixedScaler equals River's own composition, and every catalog
model learns numbers, booleans and strings in one event."""

from __future__ import annotations

import math
import numbers
import pickle
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from river import anomaly, compose, datasets, linear_model, preprocessing

from riverbed import models
from riverbed.learning.learner import PartitionLearner
from riverbed.models.features import MixedScaler
from riverbed.records import Event


def mixed_stream(n: int, seed: int = 7) -> list[tuple[dict[str, Any], bool, float]]:
    """``(x, class label, numeric label)``: floats, ints, booleans, strings, a feature
    missing now and then, a string feature that first appears midway."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x: dict[str, Any] = {
            "amount": round(rng.uniform(0, 100), 2),
            "age": rng.randint(18, 90),
            "new_user": rng.random() < 0.3,
            "country": rng.choice(["FR", "DE", "US", "JP"]),
            "device": rng.choice(["ios", "android", "web"]),
            "score": rng.gauss(0, 1),
        }
        if rng.random() < 0.1:
            del x[rng.choice(sorted(x))]
        if i > n // 2:
            x["plan"] = rng.choice(["free", "pro"])
        y = (x.get("amount", 50.0) > 50) != (x.get("country") == "FR")
        out.append((x, y, x.get("amount", 0.0) * 2 + 10.0 * x.get("new_user", False)))
    return out


def river_union(scaler: Any) -> compose.TransformerUnion:
    """River's own composition that MixedScaler stands for."""
    return compose.TransformerUnion(
        compose.SelectType(numbers.Number) | scaler,
        compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
    )


def _same(a: Any, b: Any) -> bool:
    """Equal, nan included (MinMaxScaler scales a name it never learned to nan)."""
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b) and type(a) is type(b)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (MixedScaler, lambda: river_union(preprocessing.StandardScaler())),
        (lambda: MixedScaler("minmax"), lambda: river_union(preprocessing.MinMaxScaler())),
    ],
    ids=["standard", "minmax"],
)
def test_transform_equals_river_union(ours: Callable[[], Any], theirs: Callable[[], Any]) -> None:
    """Same output, key order and value types included, before and after each learn;
    a ``None`` (not on the wire, but a user's own stream) is left out by both, and a
    number named as a one-hot name ("device_ios") wins the clash in both."""
    a, b = ours(), theirs()
    for i, (x, _, _) in enumerate(mixed_stream(400)):
        if "score" not in x:
            x["nothing"] = None
        if i % 7 == 0:
            x["device_ios"] = float(i)
        assert _same(a.transform_one(x), b.transform_one(x))
        a.learn_one(x)
        b.learn_one(x)
        assert _same(a.transform_one(x), b.transform_one(x))


@pytest.mark.parametrize(
    ("ours", "theirs", "label"),
    [
        (models.logreg, linear_model.LogisticRegression, 1),
        (models.linreg, linear_model.LinearRegression, 2),
    ],
    ids=["logreg", "linreg"],
)
def test_linear_models_predict_as_river_composition(
    ours: Callable[[], Any], theirs: Callable[[], Any], label: int
) -> None:
    model = ours()
    reference = river_union(preprocessing.StandardScaler()) | theirs()
    for x, *ys in mixed_stream(1000):
        y = ys[label - 1]
        if label == 1:
            assert model.predict_proba_one(x) == reference.predict_proba_one(x)
        else:
            assert model.predict_one(x) == reference.predict_one(x)
        model.learn_one(x, y)
        reference.learn_one(x, y)


def test_hst_scores_as_river_composition() -> None:
    model = models.hst()
    reference = river_union(preprocessing.MinMaxScaler()) | anomaly.HalfSpaceTrees(seed=42)
    scores = []
    for x, _, _ in mixed_stream(1000):
        score = model.score_one(x)
        assert score == reference.score_one(x)
        scores.append(score)
        model.learn_one(x)
        reference.learn_one(x)
    assert 0.0 <= min(scores) < max(scores) <= 1.0


@pytest.mark.parametrize(
    ("name", "before", "dataset"),
    [
        ("logreg", preprocessing.StandardScaler() | linear_model.LogisticRegression(),
         datasets.Phishing),
        ("linreg", preprocessing.StandardScaler() | linear_model.LinearRegression(),
         datasets.TrumpApproval),
        ("hst", preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42), datasets.Phishing),
    ],
)  # fmt: skip
def test_numeric_data_predicts_as_before(name: str, before: Any, dataset: Any) -> None:
    """On numbers only, every prediction equals the plain scaler's (Phishing 89.28%...)."""
    model = models.build(name)
    for x, y in dataset():
        if name == "hst":
            assert model.score_one(x) == before.score_one(x)
            model.learn_one(x)
            before.learn_one(x)
            continue
        if name == "logreg":
            assert model.predict_proba_one(x) == before.predict_proba_one(x)
        else:
            assert model.predict_one(x) == before.predict_one(x)
        model.learn_one(x, y)
        before.learn_one(x, y)


def test_booleans_are_0_and_1() -> None:
    scaler = MixedScaler("minmax")
    for v in (True, False, False):
        scaler.learn_one({"b": v, "n": int(v)})
    assert scaler.transform_one({"b": True, "n": 1}) == {"b": 1.0, "n": 1.0}
    standard = MixedScaler()
    for v in (True, False, True, True):
        standard.learn_one({"b": v})
    assert standard.means["b"] == 0.75


def test_bad_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        MixedScaler("robust")  # type: ignore[arg-type]


def _predict(model: Any, task: str, x: dict[str, Any]) -> Any:
    if task == "anomaly":
        return model.score_one(x)
    if task == "classification":
        return model.predict_proba_one(x)
    return model.predict_one(x)


def _learn(model: Any, task: str, x: dict[str, Any], y: bool, yr: float) -> None:
    if task == "anomaly":
        model.learn_one(x)
    else:
        model.learn_one(x, yr if task == "regression" else y)


@pytest.mark.parametrize("name", models.available())
def test_pickled_model_carries_on_equal(name: str) -> None:
    """A snapshot's pickle of a model that learned mixed features unpickles to a model
    that predicts and learns exactly as the original."""
    task = models.spec(name).task
    stream = mixed_stream(400)
    model = models.build(name)
    for x, y, yr in stream[:200]:
        _learn(model, task, x, y, yr)
    copy = pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    for x, y, yr in stream[200:]:
        assert _predict(copy, task, x) == _predict(model, task, x)
        _learn(model, task, x, y, yr)
        _learn(copy, task, x, y, yr)


@pytest.mark.parametrize("name", models.available())
def test_every_catalog_model_learns_a_mixed_stream(name: str) -> None:
    """Through the learner, as the worker runs it: every event predicted and learned."""
    spec = models.spec(name)
    learner = PartitionLearner(spec, partition=0)
    stream = mixed_stream(300)
    for i, (x, y, yr) in enumerate(stream):
        label = yr if spec.task == "regression" else y
        learner.process_event(Event(f"e{i}", x, y=label), offset=i, ts_ms=i)
    assert learner.events == learner.learned == len(stream)
    orjson.dumps(learner.describe())  # /models (hst's ROCAUC answers a numpy float)
