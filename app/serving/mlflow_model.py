"""``riverbed export --format mlflow``: an MLflow model directory of a partition's River
model, written without mlflow (riverbed never imports it).

The directory is what ``mlflow.pyfunc.save_model(loader_module=..., data_path=...,
code_paths=...)`` writes, and ``mlflow.pyfunc.load_model(DIR)`` loads it where mlflow,
pandas and river are installed and riverbed is not::

    DIR/MLmodel                      the python_function flavour (YAML)
    DIR/code/riverbed_pyfunc.py      the loader (riverbed.serving.pyfunc_loader, verbatim)
    DIR/data/model.pkl               the portable pickle (riverbed.serving.export.dumps)
    DIR/data/riverbed.json           task and provenance (partition, offsets, versions)
    DIR/requirements.txt             mlflow, pandas, and the pickle's packages pinned
    DIR/python_env.yaml, conda.yaml  the same, as MLflow writes them

``MLmodel`` has no signature: a River model takes any features (a new one is learned,
a missing one left out), which a column schema enforced by MLflow would refuse or drop.
The files are written in a temporary sibling directory renamed into place at the end,
so a failed export leaves nothing, and an existing non-empty ``DIR`` is refused.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

from riverbed.exceptions import RiverbedError
from riverbed.serving import pyfunc_loader
from riverbed.serving.export import Exported

__all__ = ["LOADER_MODULE", "MLFLOW_REQUIREMENT", "MlflowModel", "check_out", "write_mlflow_model"]

LOADER_MODULE = "riverbed_pyfunc"
# The oldest MLflow whose pyfunc loads the directory (pyproject's extra `mlflow`).
MLFLOW_REQUIREMENT = "mlflow>=2.10"
# pandas: MLflow's pyfunc needs it, and the loader only builds and reads DataFrames.
PANDAS_REQUIREMENT = "pandas"
CODE_DIR = "code"
DATA_DIR = "data"


class ExportError(RiverbedError):
    """The MLflow model cannot be written there (an existing file or non-empty directory)."""


@dataclass(frozen=True)
class MlflowModel:
    """What was written."""

    path: Path
    requirements: list[str]  # requirements.txt's lines
    unpinned: list[str]  # modules the pickle imports that no installed distribution provides


def check_out(out: Path) -> None:
    """Refuse ``out`` unless it is missing or an empty directory (checked before the
    snapshot is read, and again when the directory is renamed into place)."""
    if out.is_dir():
        if any(out.iterdir()):
            msg = f"--out {out}: the directory exists and is not empty; give a new one"
            raise ExportError(msg)
    elif out.exists():
        msg = f"--out {out}: a file exists there; --format mlflow writes a directory"
        raise ExportError(msg)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def requirements(exported: Exported) -> tuple[list[str], list[str]]:
    """requirements.txt's lines (mlflow, pandas, then every distribution whose modules
    the pickle imports, pinned as MLflow pins what it infers) and the modules no
    installed distribution provides (a custom model's local module).

    Examples
    --------
    >>> from riverbed import models
    >>> from riverbed.serving.export import dumps
    >>> reqs, unpinned = requirements(dumps(models.build("logreg")))
    >>> reqs[:2], [r.split("==")[0] for r in reqs[2:]], unpinned
    (['mlflow>=2.10', 'pandas'], ['river'], [])

    """
    dists = packages_distributions()
    pinned: dict[str, str] = {}
    unpinned: list[str] = []
    for module in exported.needs:
        found = False
        for dist in dists.get(module, ()):
            v = _version(dist)
            if v is not None and _canonical(dist) not in {"mlflow", "pandas"}:
                pinned.setdefault(_canonical(dist), f"{dist}=={v}")
                found = True
        if not found and module not in {"mlflow", "pandas"}:
            unpinned.append(module)
    return [MLFLOW_REQUIREMENT, PANDAS_REQUIREMENT, *sorted(pinned.values())], unpinned


# -- YAML, as far as these files need it (no PyYAML at export) -------------------------


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return ".nan" if math.isnan(v) else (".inf" if v > 0 else "-.inf")
    if isinstance(v, int | float):
        return json.dumps(v)
    return json.dumps(str(v))  # a double-quoted YAML scalar: JSON's escapes are YAML's


def to_yaml(obj: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars (strings double-quoted).

    Examples
    --------
    >>> print(to_yaml({"a": {"b": [1, "x: y"], "c": None}, "d": []}), end="")
    a:
      b:
      - 1
      - "x: y"
      c: null
    d: []

    """
    pad = " " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)) else json.dumps(str(k))
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(v, indent + (2 if isinstance(v, dict) else 0)).rstrip("\n"))
            else:
                lines.append(
                    f"{pad}{key}: {_empty(v) if isinstance(v, dict | list) else _scalar(v)}"
                )
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict | list) and v:
                body = to_yaml(v, indent + 2).lstrip()
                lines.append(f"{pad}- {body.rstrip(chr(10))}")
            else:
                lines.append(f"{pad}- {_empty(v) if isinstance(v, dict | list) else _scalar(v)}")
    else:
        lines.append(pad + _scalar(obj))
    return "\n".join(lines) + "\n"


def _empty(v: dict[Any, Any] | list[Any]) -> str:
    return "{}" if isinstance(v, dict) else "[]"


# -- the directory ---------------------------------------------------------------------


def _build_dependencies() -> list[str]:
    """pip, setuptools and wheel pinned when installed (as MLflow's python_env.yaml)."""
    out = []
    for name in ("pip", "setuptools", "wheel"):
        v = _version(name)
        out.append(f"{name}=={v}" if v else name)
    return out


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def write_mlflow_model(out: Path, exported: Exported, info: dict[str, Any]) -> MlflowModel:
    """Write the MLflow model directory ``out`` (see the module doc) of the portable
    pickle ``exported``. ``info`` (``task``: classification, regression or anomaly,
    and the provenance) goes to ``data/riverbed.json`` and the MLmodel's ``metadata``.
    """
    if info.get("task") not in pyfunc_loader.TASKS:
        msg = f"unknown task {info.get('task')!r}"
        raise ValueError(msg)
    check_out(out)
    reqs, unpinned = requirements(exported)
    python = platform.python_version()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / CODE_DIR).mkdir(parents=True)
        (tmp / DATA_DIR).mkdir()
        loader = Path(pyfunc_loader.__file__).read_text(encoding="utf-8")
        (tmp / CODE_DIR / f"{LOADER_MODULE}.py").write_text(loader, encoding="utf-8")
        (tmp / DATA_DIR / pyfunc_loader.MODEL_FILE).write_bytes(exported.blob)
        (tmp / DATA_DIR / pyfunc_loader.INFO_FILE).write_text(
            json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
        build = _build_dependencies()
        python_env = {"python": python, "build_dependencies": build,
                      "dependencies": ["-r requirements.txt"]}  # fmt: skip
        (tmp / "python_env.yaml").write_text(to_yaml(python_env), encoding="utf-8")
        pip = build[0].replace("==", "<=")  # MLflow's: conda-forge may lag PyPI's pip
        conda = {"channels": ["conda-forge"], "name": "mlflow-env",
                 "dependencies": [f"python={python}", pip, {"pip": reqs}]}  # fmt: skip
        (tmp / "conda.yaml").write_text(to_yaml(conda), encoding="utf-8")
        mlmodel = {
            "flavors": {
                "python_function": {
                    "code": CODE_DIR,
                    "data": DATA_DIR,
                    "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                    "loader_module": LOADER_MODULE,
                    "python_version": python,
                    "streamable": False,
                },
            },
            "metadata": {"riverbed": info},
            "model_size_bytes": _size(tmp),
            "model_uuid": uuid.uuid4().hex,
            # MLflow's own form: a naive UTC time, str()'d
            "utc_time_created": str(datetime.now(UTC).replace(tzinfo=None)),
        }
        (tmp / "MLmodel").write_text(to_yaml(mlmodel), encoding="utf-8")
        check_out(out)
        # rename(2) replaces an empty directory and fails on a non-empty one (a writer
        # that got there first).
        os.replace(tmp, out)
    except OSError as exc:
        msg = f"cannot write --out {out}: {exc.strerror or exc}"
        raise ExportError(msg) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return MlflowModel(out, reqs, unpinned)
