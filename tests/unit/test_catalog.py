"""Every catalog model passes River's own estimator checks, like river's test_estimators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from river import checks, datasets

from riverbed import models
from riverbed.learning import river_compat
from riverbed.models import UnknownModel


def _offline_anomaly_datasets(model: object, scale: int = 1) -> Iterator[object]:
    # River checks anomaly detectors on datasets.CreditCard, which is downloaded at run
    # time; this machine (and CI) reach no website. Phishing is bundled in the wheel and
    # has the same shape (numeric features, boolean target), so the checks run on it.
    yield datasets.Phishing().take(1000 * scale)


def _checks() -> list:
    params = []
    for name in models.available():
        model = models.build(name)
        if models.spec(name).task == "anomaly":
            with river_compat.offline_check_datasets(_offline_anomaly_datasets):
                found = list(checks.yield_checks(model))
        else:
            found = list(checks.yield_checks(model))
        for check in found:
            params.append(pytest.param(name, check, id=f"{name}:{check.__name__}"))
    return params


@pytest.mark.parametrize(("name", "check"), _checks())
def test_river_checks(name: str, check: object) -> None:
    check(models.build(name))  # type: ignore[operator]


def test_build_returns_independent_estimators() -> None:
    """Learning on one build leaves another untouched: no state is shared."""
    import pickle

    x, y = {"a": 1.0, "b": 0.5}, 1.0
    for name in models.available():
        spec = models.spec(name)
        one, two = models.build(name), models.build(name)
        fresh = pickle.dumps(two)
        for _ in range(5):
            one.learn_one(x) if spec.task == "anomaly" else one.learn_one(x, y)
        assert pickle.dumps(two) == fresh, name
        assert pickle.dumps(one) != fresh, name


def test_module_factory() -> None:
    spec = models.spec("river.linear_model:PAClassifier")
    assert spec.task == "classification"
    assert spec.metric().__class__.__name__ == "Accuracy"


@pytest.mark.parametrize("name", ["nope", "river.linear_model:Nope", "nomodule_xyz:f", "math:pi"])
def test_unknown_models(name: str) -> None:
    with pytest.raises(UnknownModel):
        models.spec(name)


def test_a_model_that_cannot_be_pickled_is_refused_at_start_up() -> None:
    """A snapshot pickles the model: one that cannot be pickled stops start-up, naming
    RIVERBED_MODEL and the reason, instead of the worker at its first checkpoint."""
    from riverbed.config import Settings
    from riverbed.exceptions import ConfigError
    from riverbed.learning.state import Learners

    spec = models.spec("tests.faulty_model:unpicklable")
    with pytest.raises(ConfigError) as refused:
        Learners.from_settings(spec, Settings.from_env({}))
    assert "RIVERBED_MODEL='tests.faulty_model:unpicklable'" in str(refused.value)
    assert "cannot pickle '_thread.lock' object" in str(refused.value)
    for name in models.available():
        Learners.from_settings(models.spec(name), Settings.from_env({}))
