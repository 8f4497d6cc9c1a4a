"""Every private name of River that riverbed touches, listed and checked.

River's counterpart of ``riverbed.kafka.compat`` (``riverbed.privates`` has the
mechanism; this module imports nothing of Faust, mode, aiokafka or asyncio, as all of
``learning/``). Each name is in :data:`PRIVATE` with the reason; the accessors below are
the only code that reads, writes or calls them (app/, tests/ and bench/ go through
them). :func:`check` verifies them against the installed River: ``riverbed inspect``
runs it (it reads the first two), ``tests/unit/test_compat.py`` runs it with the names
only tests use, and ``tests/unit/test_private_names.py`` fails on a private name of River
in riverbed's source that is not listed here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from riverbed.privates import Private
from riverbed.privates import check as check_names

__all__ = ["PRIVATE", "check", "first_window", "offline_check_datasets", "params", "weights"]

PRIVATE: tuple[Private, ...] = (
    Private("river", "river.base:Base", "_get_params", "method",
            "an estimator's parameters, for `riverbed inspect` (what River's own repr and "
            "clone read; no public accessor) (params)"),
    Private("river", "river.anomaly:HalfSpaceTrees", "_first_window", "attribute",
            "whether the first window of half-space trees is still filling, for `riverbed "
            "inspect` (first_window)"),
    Private("river", "river.checks", "_yield_datasets", "function",
            "River's estimator checks read anomaly detectors' datasets from it, CreditCard "
            "downloaded at run time: tests/unit/test_catalog.py gives them a bundled one "
            "(offline_check_datasets)", tests_only=True),
    Private("river", "river.linear_model.base:GLM", "_weights", "attribute",
            "the live weights of a linear model (its weights property is a copy): "
            "tests/unit/test_guard.py poisons one in place (weights)", tests_only=True),
)  # fmt: skip


def check(names: tuple[Private, ...] = PRIVATE, *, tests: bool = False) -> None:
    """Verify River's private names against the installed River (with ``tests``, those
    only riverbed's tests use too).

    Raises
    ------
    IncompatibleLibrary
        Naming River, its installed version and each missing name.

    """
    check_names(names, tests=tests)


def params(estimator: Any) -> dict[str, Any]:
    """The parameters ``estimator`` was made with (``{}`` if it cannot say).

    Examples
    --------
    >>> from river import linear_model
    >>> params(linear_model.LogisticRegression(l2=0.1))["l2"]
    0.1

    """
    try:
        found: dict[str, Any] = estimator._get_params()
    except Exception:
        return {}
    return found


def first_window(estimator: Any) -> bool:
    """Whether half-space trees still fill their first window (they score 0 until then)."""
    return bool(estimator._first_window)


def weights(model: Any) -> Any:
    """A linear model's own weights (a mapping; writes change the model)."""
    return model._weights


@contextlib.contextmanager
def offline_check_datasets(
    datasets: Callable[..., Iterator[Any]],
) -> Iterator[None]:
    """River's estimator checks (``river.checks.yield_checks``) draw their datasets from
    ``datasets`` meanwhile (River's own downloads one for anomaly detectors)."""
    from river import checks

    original = checks._yield_datasets
    checks._yield_datasets = datasets
    try:
        yield
    finally:
        checks._yield_datasets = original
