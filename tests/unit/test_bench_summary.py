"""bench/checkpoint_speed.py's verdict: the paired comparison that says whether a
checkpoint cadence can be told from no checkpoints (issue 19's acceptance)."""

from __future__ import annotations

import doctest

import pytest


@pytest.fixture(scope="module")
def checkpoint_speed():
    from bench import checkpoint_speed

    return checkpoint_speed


def test_rounds_are_compared_with_their_own_none(checkpoint_speed):
    # Round 2 is slow for every setting: paired, it does not look like a cost.
    runs = {"none": [100.0, 50.0, 100.0], "cadence": [98.0, 49.0, 97.0]}
    out = checkpoint_speed.summarize("hoeffding", 10, runs)
    assert out["paired_against_none"]["cadence"] == [0.98, 0.98, 0.97]
    assert out["paired_against_none_median"]["cadence"] == 0.98
    assert out["noise"] == 0.5
    assert out["within_noise"] == {"none": True, "cadence": True}
    assert out["against_none"]["cadence"] == 0.98  # best rounds: 98 / 100


def test_a_cost_beyond_the_spread_is_not_noise(checkpoint_speed):
    runs = {"none": [100.0, 101.0, 99.0], "cadence": [90.0, 92.0, 91.0]}
    out = checkpoint_speed.summarize("hoeffding", 10, runs)
    assert out["noise"] == 0.02
    assert out["within_noise"]["cadence"] is False


def test_docstring_examples(checkpoint_speed):
    assert doctest.testmod(checkpoint_speed).failed == 0
