"""Load exported models in a plain Python: river installed, riverbed not importable.

riverbed is installed editable in the venv (a ``.pth`` file hooks it in), so the child
runs with ``-I -S`` (no site processing, no current directory, no PYTHONPATH) and only
the site-packages directories on ``sys.path``: river and numpy import, riverbed does
not, and the child checks that before it unpickles anything.
"""

from __future__ import annotations

import json
import pickle
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

PLAIN_TIMEOUT_S = 120.0

# A child's first check, before it loads anything: riverbed must not be importable.
WITHOUT_RIVERBED = r"""
try:
    import riverbed  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("riverbed is importable here: not a Python without riverbed")
"""

CHILD = (
    r"""
import json, pickle, sys
sys.path.extend(json.loads(sys.argv[1]))
"""
    + WITHOUT_RIVERBED
    + r"""
jobs, out_path = json.loads(sys.argv[2]), sys.argv[3]


def predict(model, task, x):
    if task == "classification":
        return model.predict_one(x), model.predict_proba_one(x)
    if task == "regression":
        return model.predict_one(x), None
    return model.score_one(x), None


results = []
for model_path, task, probes in jobs:
    with open(model_path, "rb") as fh:
        model = pickle.load(fh)
    before = [predict(model, task, x) for x, _ in probes]
    for x, y in probes:
        if task == "anomaly":
            model.learn_one(x)
        else:
            model.learn_one(x, y)
    after = [predict(model, task, x) for x, _ in probes]
    results.append({"before": before, "after": after, "type": type(model).__name__})
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "riverbed")
with open(out_path, "wb") as fh:
    pickle.dump({"results": results, "riverbed_modules": loaded}, fh)
"""
)


def predict_without_riverbed(
    jobs: list[tuple[Path, str, list[tuple[dict[str, Any], Any]]]], workdir: Path
) -> list[dict[str, Any]]:
    """For each ``(model file, task, probes)``: the loaded model's predictions of the
    probes' ``x`` (``before``), then again after it learned the probes (``after``).

    Predictions are ``(y_pred, proba or None)``; an anomaly model's ``y_pred`` is its score.
    """
    out = workdir / "plain-results.pkl"
    spec = [[str(path), task, probes] for path, task, probes in jobs]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, json.dumps(site.getsitepackages()),
         json.dumps(spec), str(out)],
        cwd=workdir, capture_output=True, text=True, timeout=PLAIN_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with out.open("rb") as fh:
        got = pickle.load(fh)
    assert got["riverbed_modules"] == []
    return list(got["results"])
