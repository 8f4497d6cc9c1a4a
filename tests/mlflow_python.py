"""A Python with mlflow, pandas and river but no riverbed: ``.cache/mlflow-venv``.

Made once with ``python -m venv`` and pip from PyPI (pyproject's extra ``mlflow``, and
the river this venv has, pinned), and made again only when those requirements change
(they are kept in the venv's stamp file, written last: a venv without it is half made
and made anew). A file lock makes concurrent test processes (pytest-xdist) wait for the
one that makes it. :class:`CannotInstall` carries pip's last line when it cannot be made
(no network, no index): the acceptance test is skipped with it, and only then.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import time
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tests.helpers import ROOT
from tests.plain_python import WITHOUT_RIVERBED

VENV = ROOT / ".cache" / "mlflow-venv"
STAMP = ".riverbed-requirements"
INSTALL_TIMEOUT_S = 900.0
LOAD_TIMEOUT_S = 180.0


class CannotInstall(Exception):
    """The venv could not be made; the message is the failing command's last line."""


def requirements() -> list[str]:
    """pyproject's extra ``mlflow``, and this venv's river pinned (the pickle's)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["optional-dependencies"]["mlflow"], f"river=={version('river')}"]


def _run(cmd: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CannotInstall(f"{' '.join(cmd[:4])} ...: no answer in {timeout:.0f} s") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise CannotInstall(lines[-1] if lines else f"exit {proc.returncode}")


def mlflow_python() -> tuple[Path, float | None]:
    """The venv's python, and how long making it took (None: it was there already)."""
    reqs = "\n".join(requirements()) + "\n"
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with (VENV.parent / "mlflow-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        stamp = VENV / STAMP
        if stamp.exists() and stamp.read_text() == reqs and python.exists():
            return python, None
        started = time.monotonic()
        shutil.rmtree(VENV, ignore_errors=True)
        # No pip of its own (ensurepip) and no byte-compiling of every installed module:
        # this venv's pip is the project's (`pip --python`), and Python compiles what
        # the child imports as it imports it. 25.6 -> 5.5 s to make it.
        _run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], timeout=120)
        _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
              "--disable-pip-version-check", "--no-compile", *requirements()],
             timeout=INSTALL_TIMEOUT_S)  # fmt: skip
        stamp.write_text(reqs)
        return python, time.monotonic() - started


CHILD = (
    r"""
import json, sys
"""
    + WITHOUT_RIVERBED
    + r"""
import mlflow
import mlflow.pyfunc
import pandas as pd

jobs, out_path = json.loads(sys.argv[1]), sys.argv[2]
results = []
for model_dir, rows in jobs:
    model = mlflow.pyfunc.load_model(model_dir)
    frame = pd.DataFrame(rows, index=[f"r{i}" for i in range(len(rows))])
    got = model.predict(frame)
    assert isinstance(got, pd.DataFrame), type(got)
    assert list(got.index) == list(frame.index)
    results.append({"records": got.to_dict(orient="records"), "columns": list(got.columns),
                    "metadata": model.metadata.metadata})
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "riverbed")
with open(out_path, "w") as fh:
    json.dump({"results": results, "riverbed_modules": loaded, "mlflow": mlflow.__version__,
               "pandas": pd.__version__}, fh)
"""
)


def predict_with_mlflow(
    python: Path, jobs: list[tuple[Path, list[dict[str, Any]]]], workdir: Path
) -> dict[str, Any]:
    """For each ``(model directory, rows)``: ``mlflow.pyfunc.load_model(dir).predict(
    pandas.DataFrame(rows))`` in the mlflow venv, run isolated (``-I``: no current
    directory, no PYTHONPATH, no user site), as records."""
    out = workdir / "mlflow-results.json"
    spec = [[str(d), rows] for d, rows in jobs]
    proc = subprocess.run(
        [str(python), "-I", "-c", CHILD, json.dumps(spec), str(out)],
        cwd=workdir, capture_output=True, text=True, timeout=LOAD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got: dict[str, Any] = json.loads(out.read_text())
    assert got["riverbed_modules"] == []
    return got
