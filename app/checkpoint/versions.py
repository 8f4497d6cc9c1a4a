"""A partition's versions: the snapshots kept in the app's versions topic.

A snapshot is a partition learner's whole state at a pair of offsets; the snapshots
topic is compacted (a recovery wants the newest only), so a partition's history would
be cleaned away. The checkpoint also copies a snapshot to ``<prefix>versions.<app id>``
(``cleanup.policy=delete``, kept ``RIVERBED_VERSIONS_RETENTION``) when the partition's
last version is older than ``RIVERBED_VERSION_INTERVAL`` or its candidates changed (a
promotion, a manual operation): a version, as a model registry keeps them. A version is
named by its manifest's offset in the versions topic (newest last), and says what the
learner was then: its offsets, when, its candidates and their metric values, the
champion, whether it was pinned, its size and digest. Only signed versions are listed
and loaded (``RIVERBED_SNAPSHOT_KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from riverbed.checkpoint.snapshots import BadSignature, SnapshotCodec, SnapshotRefused, gather
from riverbed.exceptions import RiverbedError
from riverbed.learning.learner import PartitionLearner

__all__ = ["NoVersion", "Version", "describe_versions", "load_version"]


class NoVersion(RiverbedError):
    """No such version of the partition (never written, or past the retention)."""


@dataclass(frozen=True)
class Version:
    """One version: its number (the manifest's offset in the versions topic) and the
    manifest's verified metadata."""

    version: int
    meta: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """The version's entry of ``riverbed versions`` and ``GET /models/<p>/versions``.

        Examples
        --------
        >>> meta = {"events_offset": 41, "labels_offset": 9, "created_ms": 0,
        ...         "champion": "logreg", "pinned": False, "model": "logreg",
        ...         "candidates": {"logreg": {"metric": {"name": "Accuracy", "value": 0.5}}},
        ...         "size": 1234, "sha256": "ab" * 32, "riverbed": "0.3", "river": "0.22"}
        >>> doc = Version(7, meta).describe()
        >>> doc["version"], doc["created"], doc["candidates"]["logreg"]["metric"]["value"]
        (7, '1970-01-01T00:00:00+00:00', 0.5)

        """
        m = self.meta
        return {
            "version": self.version,
            "events_offset": m["events_offset"],
            "labels_offset": m["labels_offset"],
            "created": datetime.fromtimestamp(m["created_ms"] / 1000, UTC).isoformat(
                timespec="seconds"
            ),
            "created_ms": m["created_ms"],
            "champion": m.get("champion", str(m.get("model", "")).split(",")[0]),
            "pinned": bool(m.get("pinned", False)),
            "candidates": m.get("candidates", {}),
            "bytes": m["size"],
            "sha256": m["sha256"],
            "riverbed": m.get("riverbed"),
            "river": m.get("river"),
        }


def _verified(
    codec: SnapshotCodec, partition: int, records: list[Any]
) -> tuple[list[Version], int, Any]:
    found = gather(partition, ((r.offset, r.key, r.value, r.headers) for r in records))
    versions, refused = [], 0
    for offset, manifest in found.manifests:
        try:
            versions.append(Version(offset, codec.verify(manifest)))
        except (BadSignature, SnapshotRefused):
            refused += 1
    return versions, refused, found


def describe_versions(
    codec: SnapshotCodec, partition: int, records: list[Any]
) -> tuple[list[dict[str, Any]], int]:
    """The partition's versions among the versions topic's ``records`` (aiokafka's
    ``ConsumerRecord`` fields), newest first, and how many manifests did not verify."""
    versions, refused, _ = _verified(codec, partition, records)
    return [v.describe() for v in sorted(versions, key=lambda v: -v.version)], refused


def load_version(
    codec: SnapshotCodec, partition: int, records: list[Any], version: int | None = None
) -> tuple[PartitionLearner, Version]:
    """Version ``version`` of the partition (None: the newest), decoded.

    Raises
    ------
    NoVersion
        No such version among ``records`` (or none verifies).
    SnapshotRefused
        Its chunks are missing or its digest does not match.
    """
    versions, refused, found = _verified(codec, partition, records)
    if not versions:
        detail = f" ({refused} do not verify with RIVERBED_SNAPSHOT_KEY)" if refused else ""
        msg = f"partition {partition} has no version yet{detail}"
        raise NoVersion(msg)
    if version is None:
        chosen = max(versions, key=lambda v: v.version)
    else:
        match = [v for v in versions if v.version == version]
        if not match:
            have = ", ".join(str(v.version) for v in sorted(versions, key=lambda v: -v.version))
            msg = f"partition {partition} has no version {version} (it has {have})"
            raise NoVersion(msg)
        chosen = match[0]
    manifest = next(m for o, m in found.manifests if o == chosen.version)
    learner = codec.decode(manifest, found.chunks_of(chosen.meta["generation"]))
    return learner, chosen
