"""Cost of mixed feature types: ``logreg``'s predict_proba_one + learn_one a record.

Compares the plain ``StandardScaler`` (numbers only; what ``logreg`` was), River's own
union of typed branches, and :class:`riverbed.models.features.MixedScaler` (what
``logreg`` is), on Phishing (numbers only) and on a mixed stream (floats, ints,
booleans, strings, missing features). Median (and min) of several runs, candidates
interleaved so that a busy machine slows them alike.

    .venv/bin/python -m bench.mixed_features [--reps 11]
"""

from __future__ import annotations

import argparse
import numbers
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from river import compose, datasets, linear_model, preprocessing

from riverbed.models.features import MixedScaler


def mixed(n: int = 2000, seed: int = 1) -> list[tuple[dict[str, Any], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x: dict[str, Any] = {
            "amount": rng.uniform(0, 100),
            "age": rng.randint(18, 90),
            "new_user": rng.random() < 0.3,
            "country": rng.choice(["FR", "DE", "US", "JP", "BR"]),
            "device": rng.choice(["ios", "android", "web"]),
            "score": rng.gauss(0, 1),
        }
        if rng.random() < 0.05:
            del x["score"]
        out.append((x, (x["amount"] > 50) != (x["country"] == "FR") != x["new_user"]))
    return out


CANDIDATES: dict[str, Callable[[], Any]] = {
    "StandardScaler": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
    "River union": lambda: (
        compose.TransformerUnion(
            compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
            compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
        )
        | linear_model.LogisticRegression()
    ),
    "MixedScaler": lambda: MixedScaler() | linear_model.LogisticRegression(),
}


def run(factory: Callable[[], Any], data: list[tuple[dict[str, Any], bool]]) -> float:
    """µs a record for predict_proba_one then learn_one, from a fresh model."""
    model = factory()
    start = time.perf_counter()
    for x, y in data:
        model.predict_proba_one(x)
        model.learn_one(x, y)
    return (time.perf_counter() - start) / len(data) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=11)
    args = parser.parse_args()
    streams = {"Phishing": list(datasets.Phishing()), "mixed": mixed()}
    for stream, data in streams.items():
        names = [n for n in CANDIDATES if stream == "Phishing" or n != "StandardScaler"]
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.reps):
            for n in names:
                times[n].append(run(CANDIDATES[n], data))
        for n, ts in times.items():
            print(f"{stream:9s} {n:15s} median {statistics.median(ts):6.2f} µs  "
                  f"min {min(ts):6.2f} µs")  # fmt: skip


if __name__ == "__main__":
    main()
