"""A partition's model outside riverbed: ``riverbed export``, ``riverbed inspect`` and
``GET /models/<p>/model``.

**The export is the River model alone**, pickled so that it loads in a Python that has
River but not riverbed: every :class:`~riverbed.models.features.MixedScaler` of the
catalog's pipelines is written as the River composition it equals
(:meth:`~riverbed.models.features.MixedScaler.to_river`, learned statistics included),
so the loaded model predicts exactly what the partition's learner predicts, and can
learn on. A custom model (``RIVERBED_MODEL=module:factory``) is pickled as it is: the
export names the modules beyond River's that loading it imports.

``export`` and ``inspect`` read the newest snapshot of the partition that verifies
(``RIVERBED_SNAPSHOT_KEY``) from the app's snapshots topic; no worker needs to run.
Only signed snapshots are unpickled, and nothing received over HTTP ever is: the
worker's ``/models/<p>/model`` only writes a pickle.
"""

from __future__ import annotations

import functools
import io
import pickle
import re
import sys
import time
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, requires, version
from typing import Any

from river import compose

from riverbed.checkpoint.recovery import read_snapshot_partitions
from riverbed.checkpoint.snapshots import SnapshotCodec, pick_latest
from riverbed.checkpoint.versions import NoVersion, describe_versions, load_version
from riverbed.config import PROJECT_ROOT, Settings
from riverbed.exceptions import ConfigError, RiverbedError
from riverbed.kafka.topics import snapshots_topic, versions_topic
from riverbed.learning import river_compat
from riverbed.learning.learner import PartitionLearner
from riverbed.models import final_step
from riverbed.models.features import MixedScaler

__all__ = [
    "Exported",
    "NoSnapshot",
    "Snapshot",
    "describe_model",
    "dumps",
    "format_inspection",
    "inspection",
    "latest_snapshot",
    "list_versions",
    "load_snapshot",
    "portable",
]

PROTOCOL = pickle.HIGHEST_PROTOCOL
TOP_WEIGHTS = 10
# The key file a worker without RIVERBED_SNAPSHOT_KEY signs with (riverbed.main).
KEY_FILE = PROJECT_ROOT / ".riverbed" / "snapshot.key"
METADATA_TIMEOUT_S = 30.0


class NoSnapshot(RiverbedError):
    """The partition has no snapshot that can be read (none yet, or none verifies)."""


# -- the portable pickle -------------------------------------------------------------


def portable(model: Any) -> Any:
    """``model`` with the MixedScalers of its pipelines and unions written as River's
    own composition; the other steps are shared, not copied (nothing is changed).

    Examples
    --------
    >>> from riverbed import models
    >>> model = models.build("logreg")
    >>> model.learn_one({"amount": 10.0, "country": "FR"}, True)
    >>> list(portable(model).steps)
    ['TransformerUnion', 'LogisticRegression']
    >>> x = {"amount": 4.0, "country": "DE"}
    >>> portable(model).predict_proba_one(x) == model.predict_proba_one(x)
    True
    >>> portable(models.build("hoeffding")) is not None
    True

    """
    if isinstance(model, MixedScaler):
        return model.to_river()
    if isinstance(model, compose.Pipeline):
        steps = list(model.steps.values())
        new = [portable(s) for s in steps]
        if all(a is b for a, b in zip(new, steps, strict=True)):
            return model
        # Names River infers (TransformerUnion, ...), unless the user named a step.
        named = [
            s if name == type(old).__name__ else (name, s)
            for (name, old), s in zip(model.steps.items(), new, strict=True)
        ]
        return compose.Pipeline(*named)
    if isinstance(model, compose.TransformerUnion):
        parts = list(model.transformers.values())
        new = [portable(t) for t in parts]
        if all(a is b for a, b in zip(new, parts, strict=True)):
            return model
        return compose.TransformerUnion(*new)
    return model


class _Pickler(pickle.Pickler):
    """Writes a MixedScaler found anywhere (in a wrapper :func:`portable` does not walk
    into) as its River composition, and notes the modules the pickle imports."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, PROTOCOL)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, MixedScaler):
            union = obj.to_river()  # loads as TransformerUnion() given the union's state
            return type(union), (), union.__dict__
        if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
            module = getattr(obj, "__module__", None)
            if module:
                self.modules.add(module.split(".")[0])
        return NotImplemented


@functools.cache
def _river_requirements() -> frozenset[str]:
    """River and the modules it always imports (numpy, scipy, ...)."""
    needed = {"river"}
    try:
        for req in requires("river") or ():
            if "extra ==" not in req:
                name = re.match(r"[A-Za-z0-9_.-]+", req)
                if name:
                    needed.add(name.group(0).lower().replace("-", "_"))
    except PackageNotFoundError:  # pragma: no cover - river is a dependency
        pass
    return frozenset(needed)


@dataclass(frozen=True)
class Exported:
    """A model's portable pickle and what loading it imports."""

    blob: bytes
    needs: list[str]  # top-level modules beyond the standard library
    extra: list[str]  # of them, those River does not bring (a custom model's own)

    @property
    def loads_with(self) -> str:
        """A line saying where the pickle loads."""
        line = f"loads with pickle where river {version('river')} is installed"
        if self.extra:
            line += f" and these modules import: {', '.join(self.extra)}"
        return line


def dumps(model: Any) -> Exported:
    """The portable pickle of ``model`` (see the module doc).

    It runs on the caller's thread and holds it for as long as pickling takes: about
    twice a plain pickle's time (7 ms for hst's 170 KB, 130 ms for a 10 MB forest).

    Examples
    --------
    >>> from riverbed import models
    >>> exported = dumps(models.build("logreg"))
    >>> "riverbed" in exported.needs, exported.extra
    (False, [])

    """
    buf = io.BytesIO()
    pickler = _Pickler(buf)
    pickler.dump(portable(model))
    needs = sorted(pickler.modules - set(sys.stdlib_module_names) - {"__main__"})
    extra = [m for m in needs if m not in _river_requirements()]
    return Exported(buf.getvalue(), needs, extra)


# -- inspection ----------------------------------------------------------------------

_PLAIN = (str, int, float, bool, type(None))


def _step(step: Any) -> str:
    """``Name(param=value, ...)`` with the parameters that are plain values."""
    params = river_compat.params(step)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if isinstance(v, _PLAIN))
    return f"{type(step).__name__}({shown})"


def _tree(est: Any) -> dict[str, Any]:
    """A Hoeffding tree's size (River's ``summary``; a tree without a node yet is 0)."""
    summary = dict(est.summary)
    return {
        "nodes": int(summary.pop("n_nodes", None) or 0),
        "leaves": int(summary.pop("n_leaves", None) or 0),
        "depth": int(summary.pop("height", None) or 0),
        **{k: (v or 0) for k, v in summary.items()},
    }


def describe_model(model: Any) -> dict[str, Any]:
    """The model's structure: its steps, and by kind the weights of a linear model, the
    size of a tree, each tree of a forest, the parameters of half-space trees.

    Examples
    --------
    >>> from riverbed import models
    >>> model = models.build("logreg")
    >>> model.learn_one({"amount": 10.0, "country": "FR"}, True)
    >>> doc = describe_model(model)
    >>> doc["steps"]
    ["MixedScaler(scale='standard')", 'LogisticRegression(l2=0.0, l1=0.0, ...)']
    >>> doc["linear"]
    {'intercept': 0.005, 'weights': 2, 'top_weights': [['country_FR', 0.005], ['amount', 0.0]]}
    >>> describe_model(models.build("hoeffding"))["tree"]["nodes"]
    0

    """
    river_compat.check()  # the private names of River read here
    steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else [model]
    est = final_step(model)
    doc: dict[str, Any] = {"estimator": type(est).__name__, "steps": [_step(s) for s in steps]}
    weights = getattr(est, "weights", None)
    if weights is not None and hasattr(weights, "items"):
        pairs = [(str(k), float(v)) for k, v in weights.items() if isinstance(v, int | float)]
        pairs.sort(key=lambda kv: (-abs(kv[1]), kv[0]))
        doc["linear"] = {
            "intercept": float(getattr(est, "intercept", 0.0)),
            "weights": len(pairs),
            "top_weights": [list(kv) for kv in pairs[:TOP_WEIGHTS]],
        }
    if hasattr(est, "summary") and hasattr(est, "n_leaves"):
        doc["tree"] = _tree(est)
    trees = getattr(est, "models", None)
    if isinstance(trees, list) and trees and all(hasattr(t, "summary") for t in trees):
        forest: dict[str, Any] = {"trees": [_tree(t) for t in trees]}
        for name in ("n_drifts_detected", "n_warnings_detected"):
            counter = getattr(est, name, None)
            if callable(counter):
                forest[name.removeprefix("n_").removesuffix("_detected")] = int(counter())
        doc["forest"] = forest
    if type(est).__name__ == "HalfSpaceTrees":
        doc["half_space_trees"] = {
            "trees": int(est.n_trees),
            "height": int(est.height),
            "window_size": int(est.window_size),
            "in_window": int(est.counter),  # events into the current window
            "first_window_done": not river_compat.first_window(est),
        }
    return doc


def inspection(learner: PartitionLearner, meta: dict[str, Any] | None = None,
               topic: str | None = None, now: float | None = None,
               model: str | None = None) -> dict[str, Any]:  # fmt: skip
    """What ``riverbed inspect`` prints (``--json``): the learner's counters, its
    snapshot and the structure of its champion's model (or of candidate ``model``)."""
    now = time.time() if now is None else now
    d = learner.describe()
    holder = learner.candidate(model)
    name = holder.spec.name
    doc: dict[str, Any] = {
        "partition": learner.partition,
        "model": name,
        "champion": learner.spec.name,
        "task": learner.task,
        "events": d["events"],
        "learned": d["learned"],
        "labels": d["labels"],
        "pending": d["pending"],
        "metric": d["candidates"][name]["metric"],
        "drifts": d["candidates"][name]["drifts"],
        "features": d["features"],
        "last_offset": d["last_offset"],
        "last_label_offset": d["last_label_offset"],
    }
    if meta is not None:
        created = meta["created_ms"] / 1000
        doc["snapshot"] = {
            "topic": topic,
            "events_offset": meta["events_offset"],
            "labels_offset": meta["labels_offset"],
            "created": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds"),
            "age_s": round(now - created, 3),
            "bytes": meta["size"],
            "chunks": meta["chunks"],
            "riverbed": meta["riverbed"],
            "river": meta["river"],
        }
    doc["structure"] = describe_model(holder.model)
    return doc


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _tree_line(t: dict[str, Any]) -> str:
    line = f"nodes {t['nodes']}, leaves {t['leaves']}, depth {t['depth']}"
    if "n_active_leaves" in t:
        line += f" ({t['n_active_leaves']} leaves active)"
    if t.get("n_alternate_trees"):
        line += f", {t['n_alternate_trees']} alternate subtrees"
    return line


def format_inspection(doc: dict[str, Any]) -> str:
    """The human-readable form of :func:`inspection`.

    Examples
    --------
    >>> from riverbed import models
    >>> from riverbed.records import Event
    >>> learner = PartitionLearner(models.spec("logreg"), partition=3)
    >>> _ = learner.process_event(Event("a", {"f": 2.0}, True), offset=7, ts_ms=0)
    >>> print(format_inspection(inspection(learner)))
    partition 3: logreg (classification)
      pipeline      MixedScaler(scale='standard') | LogisticRegression(...)
      events        1 (1 learned; labels: 0 joined, 0 late, 0 orphan, 0 waiting)
      metric        Accuracy 0.0000
      drifts        0
      features      1
      offsets       events 7, labels -1
      intercept     0.0050
      weights       1; the largest by |w|:
                     0.0000  f

    """
    s = doc["structure"]
    labels = doc["labels"]
    metric = doc["metric"]
    lines = [
        f"partition {doc['partition']}: {doc['model']} ({doc['task']})",
        f"  pipeline      {' | '.join(s['steps'])}",
        f"  events        {doc['events']:,} ({doc['learned']:,} learned; labels: "
        f"{labels.get('joined', 0):,} joined, {labels.get('late', 0):,} late, "
        f"{labels.get('orphan', 0):,} orphan, {doc['pending']:,} waiting)",
        f"  metric        {metric['name']} {metric['value']:.4f}",
        f"  drifts        {doc['drifts']}",
        f"  features      {doc['features']:,}",
        f"  offsets       events {doc['last_offset']}, labels {doc['last_label_offset']}",
    ]
    snap = doc.get("snapshot")
    if snap:
        lines.append(
            f"  snapshot      {snap['created']} ({_age(snap['age_s'])} ago) in {snap['topic']}: "
            f"{snap['bytes']:,} bytes in {snap['chunks']} chunk(s); riverbed "
            f"{snap['riverbed']}, river {snap['river']}"
        )
    if "linear" in s:
        lin = s["linear"]
        lines.append(f"  intercept     {lin['intercept']:.4f}")
        lines.append(f"  weights       {lin['weights']:,}; the largest by |w|:")
        lines += [f"                {w: .4f}  {name}" for name, w in lin["top_weights"]]
    if "tree" in s:
        lines.append(f"  tree          {_tree_line(s['tree'])}")
    if "forest" in s:
        f = s["forest"]
        extra = "".join(f", {f[k]} {k}" for k in ("drifts", "warnings") if k in f)
        lines.append(f"  forest        {len(f['trees'])} trees{extra}")
        lines += [f"    tree {i:<4}    {_tree_line(t)}" for i, t in enumerate(f["trees"])]
    if "half_space_trees" in s:
        h = s["half_space_trees"]
        done = "past the first window" if h["first_window_done"] else "in its first window"
        lines.append(
            f"  trees         {h['trees']} of height {h['height']}, window {h['window_size']} "
            f"({h['in_window']} events into the current one; {done})"
        )
    return "\n".join(lines)


# -- reading a snapshot --------------------------------------------------------------


def snapshot_key(settings: Settings) -> bytes:
    """The key the workers sign with: ``RIVERBED_SNAPSHOT_KEY``, else the key file a
    worker without it made (never a new key: it would verify nothing)."""
    if settings.snapshot_key:
        return settings.snapshot_key.encode()
    if KEY_FILE.exists():
        return KEY_FILE.read_bytes().strip()
    msg = (
        f"RIVERBED_SNAPSHOT_KEY is not set and there is no key file {KEY_FILE}: set "
        "RIVERBED_SNAPSHOT_KEY to the key the workers sign their snapshots with"
    )
    raise ConfigError(msg)


@dataclass
class Snapshot:
    """The newest snapshot of a partition that verifies, or one of its versions, decoded."""

    learner: PartitionLearner
    meta: dict[str, Any]
    topic: str
    refused: list[str] = field(default_factory=list)  # newer ones that did not verify
    version: int | None = None  # the version's number, when read from the versions topic


async def _partition_count(settings: Settings, topic: str) -> int | None:
    """The topic's partition count (None: no such topic). Asked of the admin client for
    every topic: naming a missing topic could have the broker create it."""
    from riverbed.kafka.clients import admin_client

    async with admin_client(settings, METADATA_TIMEOUT_S) as admin:
        topics = await admin.describe_topics()
    for t in topics:
        if t["topic"] == topic:
            return len(t["partitions"])
    return None


async def read_versions(settings: Settings, partition: int) -> list[Any]:
    """Every record of the partition of the app's versions topic.

    Raises
    ------
    NoVersion
        No versions topic, or no such partition.

    """
    topic = versions_topic(settings.topic_prefix, settings.app_id)
    missing = (
        f"no versions topic {topic} at RIVERBED_BROKER={settings.bootstrap}: no worker "
        f"of RIVERBED_APP_ID={settings.app_id} of this version has run there"
    )
    return await _read_partition(settings, topic, partition, missing, NoVersion)


async def _read_partition(
    settings: Settings, topic: str, partition: int, missing: str, error: type[RiverbedError]
) -> list[Any]:
    """Every record of ``topic[partition]`` up to its end now, after the security
    preflight; ``error(missing)`` when there is no such topic, ``error`` naming the
    partitions there are when there is no such partition."""
    from riverbed.kafka.security import client_args, preflight

    await preflight(settings)  # a refused password or certificate: one clear error
    count = await _partition_count(settings, topic)
    if count is None:
        raise error(missing)
    if not 0 <= partition < count:
        msg = f"{topic} has partitions 0..{count - 1}, not {partition}"
        raise error(msg)
    got = await read_snapshot_partitions(settings.bootstrap, topic, [partition],
                                         **client_args(settings))  # fmt: skip
    return got[partition]


async def list_versions(settings: Settings, partition: int) -> tuple[list[dict[str, Any]], int]:
    """``riverbed versions``: the partition's versions, newest first, and how many did
    not verify with ``RIVERBED_SNAPSHOT_KEY``."""
    records = await read_versions(settings, partition)
    return describe_versions(SnapshotCodec(snapshot_key(settings)), partition, records)


async def load_snapshot(settings: Settings, partition: int, version: int | None) -> Snapshot:
    """Version ``version`` of the partition (from the versions topic), or with None the
    newest snapshot that verifies (from the snapshots topic)."""
    if version is None:
        return await latest_snapshot(settings, partition)
    records = await read_versions(settings, partition)
    codec = SnapshotCodec(snapshot_key(settings))
    learner, found = load_version(codec, partition, records, version)
    topic = versions_topic(settings.topic_prefix, settings.app_id)
    return Snapshot(learner, found.meta, topic, version=found.version)


async def latest_snapshot(settings: Settings, partition: int) -> Snapshot:
    """The newest snapshot of ``partition`` in the app's snapshots topic that verifies.

    Raises
    ------
    ConfigError
        Snapshots exist and ``RIVERBED_SNAPSHOT_KEY`` verifies none of them.
    NoSnapshot
        No snapshots topic, no such partition, or no snapshot that loads.

    """
    key = snapshot_key(settings)
    topic = snapshots_topic(settings.topic_prefix, settings.app_id)
    missing = (
        f"no snapshots topic {topic} at RIVERBED_BROKER={settings.bootstrap}: no worker "
        f"of RIVERBED_APP_ID={settings.app_id} with RIVERBED_TOPIC_PREFIX="
        f"{settings.topic_prefix} has run there"
    )
    records = await _read_partition(settings, topic, partition, missing, NoSnapshot)
    picked = pick_latest(
        SnapshotCodec(key), partition, [(r.offset, r.key, r.value, r.headers) for r in records]
    )
    if picked.wrong_key:
        msg = (
            f"RIVERBED_SNAPSHOT_KEY verifies none of the {picked.manifests} snapshots of "
            f"partition {partition} in {topic}: set it to the key the workers of "
            f"RIVERBED_APP_ID={settings.app_id} sign with"
        )
        raise ConfigError(msg)
    if picked.learner is None or picked.meta is None:
        if picked.refused:
            msg = f"no snapshot of partition {partition} in {topic} loads: " + "; ".join(
                picked.refused
            )
        else:
            msg = f"partition {partition} has no snapshot in {topic} yet"
        raise NoSnapshot(msg)
    return Snapshot(picked.learner, picked.meta, topic, picked.refused)
