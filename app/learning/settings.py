"""A partition learner's settings: the worker's (``RIVERBED_*``), never a snapshot's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from riverbed.models import ModelSpec
from riverbed.records import FieldMapping, Value

__all__ = ["LearnerSettings"]


@dataclass(frozen=True)
class LearnerSettings:
    """A partition learner's settings (``RIVERBED_PENDING_*``, ``RIVERBED_MAX_FEATURES``,
    ``RIVERBED_DRIFT_*``): the worker's, never a snapshot's."""

    pending_max: int = 100_000
    pending_ttl_ms: int = 3_600_000
    pending_max_bytes: int = 64 * 1024 * 1024
    max_features: int = 10_000
    drift_detector: str = "adwin"
    drift_reset: bool = False
    mapping: FieldMapping = dataclasses.field(
        default_factory=FieldMapping
    )  # how the journal's record bytes decode again
    label_default: Value | None = None  # labels by absence: the label...
    label_default_after_ms: int = 0  # ...an event still waiting after this long gets
    metric: str = ""  # RIVERBED_METRIC ("": the task's default)
    metric_window: int = 1000  # RIVERBED_METRIC_WINDOW: the rolling metric's window; 0: none
    # RIVERBED_MODEL's candidates, the first the champion at start; the others predict
    # every event and learn every label too. Empty: the learner's spec alone.
    lineup: tuple[ModelSpec, ...] = ()
    shadow_predictions: bool = False  # RIVERBED_SHADOW_PREDICTIONS: keep their predictions
    promotion_window: int = 0  # RIVERBED_PROMOTION=auto: its window; 0: no promotion
    promotion_min_positives: int = 30  # RIVERBED_PROMOTION_MIN_POSITIVES
    threshold: str = ""  # RIVERBED_THRESHOLD ("": the argmax)
    label_maturity: bool = False  # RIVERBED_LABEL_MATURITY (resolved: on or off)
    min_labels: int = 100  # RIVERBED_MIN_LABELS: "warming" until the champion learned them

    def fields(self) -> dict[str, Any]:
        """The settings as keyword arguments (shallow: the mapping stays an object)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
