"""Wrote tests/data/learner-2284ce4.pkl and .json with the code at 2284ce4 (before the
learner was split by concern): python tests/data/make_learner_2284ce4.py tests/data/learner-2284ce4
(at that commit; kept for the record, not run by the suite)."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

from river import datasets

from riverbed import models
from riverbed.learning.learner import LearnerSettings, PartitionLearner
from riverbed.records import Event, Label


def main(argv: list[str]) -> None:
    settings = LearnerSettings(
        lineup=tuple(models.lineup("logreg,hoeffding")),
        promotion_window=50,
        promotion_min_positives=5,
        shadow_predictions=True,
        threshold="",
        metric="rocauc",
    )
    learner = PartitionLearner(models.spec("logreg"), partition=0)
    learner.configure(settings)
    data = list(datasets.Phishing())
    for i, (x, y) in enumerate(data[:300]):
        learner.process_event(Event(str(i), x, y if i < 200 else None), offset=i, ts_ms=i)
    for i in range(200, 250):
        learner.process_label(Label(str(i), data[i][1]), offset=i - 200, ts_ms=300 + i)
    # an early label: its event comes after the pickle
    learner.process_label(Label("early-1", True), offset=50, ts_ms=560)
    learner.shadows.clear()
    learner.drift_events.clear()
    blob = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
    learner = pickle.loads(blob)
    learner.configure(settings)
    got = []
    for i in range(250, 300):
        got.append(learner.process_label(Label(str(i), data[i][1]), offset=i - 199, ts_ms=600 + i))
    probas = []
    learner.process_event(Event("early-1", data[0][0]), offset=300, ts_ms=900)
    for i, (x, y) in enumerate(data[300:700], 301):
        out = learner.process_event(Event(str(i), x, y), offset=i, ts_ms=1000 + i)
        probas.append({str(k).lower(): v for k, v in out["proba"].items()})
    doc = learner.describe()
    Path(argv[1] + ".pkl").write_bytes(blob)
    Path(argv[1] + ".json").write_text(
        json.dumps(
            {
                "outcomes": got,
                "proba": probas,
                "describe": {
                    k: doc[k]
                    for k in (
                        "events",
                        "learned",
                        "labels",
                        "champion",
                        "candidates",
                        "promotions",
                        "drifts",
                        "metric",
                        "rolling",
                    )
                },
                "shadows": len(learner.shadows),
                "drift_events": learner.drift_events,
            },
            indent=0,
            default=str,
        )
    )
    print(doc["champion"], doc["promotions"], doc["labels"], len(learner.shadows))


if __name__ == "__main__":
    main(sys.argv)
