"""The README stays true: every setting, catalog model and make target it must show."""

from __future__ import annotations

from riverbed.config import SPECS
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for spec in SPECS:
        assert f"`{spec.env}`" in README, spec.env


def test_every_catalog_model_is_documented() -> None:
    from riverbed import models

    for name in models.available():
        assert f"`{name}`" in README, name


def test_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


def _exported_metric_names() -> set[str]:
    """Every riverbed_* series name a worker's /metrics has, read from its registry with
    a /models document that has every field."""
    from prometheus_client import CollectorRegistry

    from riverbed import models as catalog
    from riverbed.learning.learner import PartitionLearner
    from riverbed.records import Event
    from riverbed.serving.metrics import RiverbedMetrics

    learner = PartitionLearner(catalog.spec("logreg"), partition=0)
    learner.process_event(Event("a", {"f": 1.0}, True), offset=0, ts_ms=0)
    doc = {
        "partitions": {"0": learner.describe()},
        "dead_letters": {"deserialize": 1},
        "snapshots_written": 1,
        "snapshots_refused": 0,
        "learning_gaps": [],
        "ready": True,
        "name_cache": {"bytes": 1, "resets": 0},
        "drift_detector": "adwin",
    }
    registry = CollectorRegistry()
    metrics = RiverbedMetrics.create(registry)
    metrics.observe_latencies(0, [0.01])
    metrics.register_collector(lambda: doc, lambda _p: 0)
    names = set()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.startswith("riverbed_"):
                base = sample.name
                for suffix in ("_bucket", "_count", "_sum", "_created"):
                    if family.type == "histogram" and base.endswith(suffix):
                        base = base.removesuffix(suffix)
                if not base.endswith("_created"):
                    names.add(base)
    return names


def test_every_metric_the_worker_exports_is_in_the_metrics_table() -> None:
    import re

    rows = [line for line in README.splitlines() if line.startswith("| `riverbed_")]
    table = {name for row in rows for name in re.findall(r"`(riverbed_[a-z_]+)`", row)}
    exported = _exported_metric_names()
    assert len(exported) > 20
    assert exported - table == set(), "exported but not in the README"


def test_the_dead_letter_headers_the_readme_names_are_the_ones_written() -> None:
    import re

    from riverbed.pipeline.processor import Processor, Record

    rows = [line for line in README.splitlines() if line.startswith("| `riverbed.")]
    named = {name for row in rows for name in re.findall(r"`(riverbed\.[a-z.]+)`", row)}
    from riverbed import models as catalog
    from riverbed.kafka.topics import TopicNames
    from riverbed.learning.state import Learners

    names = TopicNames("e", "l", "p", "m", "d", "s")
    proc = Processor(Learners(catalog.spec("logreg")), names, max_record_bytes=1000)
    out = proc.handle_many("e", 0, [Record(0, 0, b"k", b"{not json", [])])
    written = {k for k, _ in out.others[0].headers or []}
    assert named == written, (named, written)
