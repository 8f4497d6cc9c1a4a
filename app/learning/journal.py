"""A partition learner's undo journal: a learn undone exactly, without copying the model.

A learn that raises half-way, or leaves the model's state non-finite, must not change
the model. Copying the model before every learn would cost ~40x the learn (1 ms for
logreg). Instead the learner keeps what it needs to rebuild itself exactly: the pickled
state of its last checkpoint (``journal_base``; None: fresh) and the records handled
since, in order (``journal``: public to the checkpoint, which keeps the entries handled
while a forked capture pickled). Undoing a learn rebuilds from the base and replays the
journal without it: the same records in the same order through the same deterministic
code, so the result is the state the partition would have had if the record had been a
dead letter. It costs a list append a record; a rebuild (rare) costs a replay of at most
one checkpoint interval. A non-finite state found later than its learn (a prediction
turned inf) is repaired the same way (:meth:`UndoJournal.repair`): each culprit is left
out and dead-lettered.

A mixin of :class:`~riverbed.learning.learner.PartitionLearner` (see
:mod:`riverbed.learning.candidates` for why); neither the journal nor its base is
pickled.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from riverbed.exceptions import InvalidRecord, ModelError
from riverbed.learning.guard import nonfinite
from riverbed.records import FieldMapping

if TYPE_CHECKING:
    from riverbed.learning.settings import LearnerSettings
    from riverbed.models import ModelSpec

__all__ = ["LEARN", "NONFINITE_REASON", "PREDICT", "Culprit", "NonFiniteState", "UndoJournal"]

logger = logging.getLogger("riverbed.learning.learner")

# Dead-letter stages of model errors.
PREDICT = "predict"
LEARN = "learn"


@dataclass(slots=True)
class Culprit:
    """A record whose learn was undone after the fact: it left the state non-finite."""

    topic: str  # "events" or "labels"
    offset: int
    source: Any  # what the processor passed along: (value, key, headers) of the record


def skipped_entry(entry: tuple[Any, ...]) -> tuple[Any, ...]:
    """A journal entry replayed as a dead letter."""
    kind, _record, offset, _ts, _source, _size = entry
    return ("sl" if kind == "l" else "s", None, offset, 0, None, 0)


NONFINITE_REASON = "learning it left the model's state non-finite (inf or nan)"


class NonFiniteState(ArithmeticError):
    """A learn left the model's state non-finite; it was undone."""


class UndoJournal:
    """The learner's part that undoes a learn: its journal, and the rebuilds from it."""

    partition: int
    spec: ModelSpec
    mapping: FieldMapping
    model: Any
    metric: Any
    rolling: Any
    challengers: list[Any]  # Candidate (candidates.py): model, metric and rolling read here
    learned: int
    drift_events: list[dict[str, Any]]
    culprits: list[Culprit]
    rollbacks: int
    snapshot_offset: int
    snapshot_ms: int | None
    restored_offset: int | None
    snapshot_bytes: int
    dead_letters: dict[str, int]

    if TYPE_CHECKING:  # the learner's own

        def __init__(self, spec: ModelSpec, *, partition: int) -> None: ...
        @property
        def settings(self) -> LearnerSettings: ...
        def configure(self, settings: LearnerSettings) -> None: ...
        def process_event(
            self, event: Any, *, offset: int, ts_ms: int, source: Any = None, size: int = 0
        ) -> dict[str, Any] | None: ...
        def process_label(
            self, label: Any, *, offset: int, ts_ms: int, source: Any = None
        ) -> str: ...
        def skip(self, offset: int, *, label: bool = False) -> None: ...

    journal_base: bytes | None
    journal: list[tuple[Any, ...]]

    def _init_journal(self, base: bytes | None) -> None:
        self.journal_base = base
        self.journal = []

    def checkpointed(self, blob: bytes, keep: list[tuple[Any, ...]] | None = None) -> None:
        """This learner's state is ``blob`` (the pickle a snapshot just captured), plus
        the journal entries ``keep`` (handled since the capture: a forked one)."""
        self._init_journal(blob)
        if keep:
            self.journal.extend(keep)
        self.snapshot_bytes = len(blob)

    def _rebuilt_from_base(self) -> Self:
        if self.journal_base is not None:
            restored: Self = pickle.loads(self.journal_base)  # noqa: S301 - our own bytes
        else:
            restored = type(self)(self.spec, partition=self.partition)
        restored.configure(self.settings)
        restored._init_journal(self.journal_base)
        return restored

    def _replay(
        self, entries: list[tuple[Any, ...]], *, check: bool, failed: list[int] | None = None
    ) -> int | None:
        """Apply journal entries; with ``check``, the index of the first whose learn
        left the state non-finite (it is not applied: the caller rebuilds)."""
        for i, (kind, kept, offset, ts_ms, source, size) in enumerate(entries):
            learned = self.learned
            record = kept
            if kept is None and source:  # decoded again from its bytes, as at first
                raw, key = source[0], source[1]
                mapping = self.mapping
                decode = mapping.event_decoder() if kind == "e" else mapping.label_decoder()
                record = decode(raw, key, len(raw))
            try:
                if kind == "e":
                    self.process_event(record, offset=offset, ts_ms=ts_ms, source=source, size=size)
                elif kind == "l":
                    self.process_label(record, offset=offset, ts_ms=ts_ms, source=source)
                else:
                    self.skip(offset, label=kind == "sl")
                    continue
            except (ModelError, InvalidRecord):
                # Only after a culprit was left out can the state differ from the live
                # run's; the record is then what it would have been: a dead letter.
                self.skip(offset, label=kind == "l")
                if failed is not None:
                    failed.append(i)
                continue
            if check and self.learned != learned and self.poisoned():
                return i
        return None

    def _adopt(self, restored: Self) -> None:
        """Become ``restored`` in place (the processor holds this object)."""
        keep = {
            "drift_events": self.drift_events,
            "culprits": self.culprits,
            "rollbacks": self.rollbacks + 1,
            "snapshot_offset": self.snapshot_offset,
            "snapshot_ms": self.snapshot_ms,
            "restored_offset": self.restored_offset,
            # Counted by the processor, never by a replay: the live count is the true one.
            "dead_letters": self.dead_letters,
        }
        restored.drift_events = []  # the replay's: published already
        self.__dict__.clear()
        self.__dict__.update(restored.__dict__)
        self.__dict__.update(keep)

    def _undo_last(self) -> None:
        """Rebuild without the record being handled (it is not in the journal yet)."""
        restored = self._rebuilt_from_base()
        restored._replay(self.journal, check=False)
        self._adopt(restored)
        self.rebase()

    def rebase(self) -> None:
        """Make the current state the base of the next undo (in memory only): a flood
        of failing records then costs a pickle each, not a replay of the whole
        checkpoint interval each."""
        self._init_journal(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    def poisoned(self) -> bool:
        """Whether the model or metric holds an inf or nan (a full walk of their state)."""
        holders: tuple[Any, ...] = (self, *self.challengers)
        return any(
            nonfinite(h.model) or nonfinite(h.metric) or nonfinite(h.rolling) for h in holders
        )

    def repair(self) -> list[Culprit]:
        """Undo every learn since the last checkpoint that left the state non-finite.

        Replays the journal with a state check after each learn; each record found
        is left out (and added to :attr:`culprits`) and the replay resumes after it.
        Returns the records left out (none when the base itself is not finite).
        """
        journal = list(self.journal)
        found: list[int] = []
        restored = self._rebuilt_from_base()
        if restored.poisoned():
            logger.error(
                "partition %d: the model's state was already non-finite at its last "
                "checkpoint; it cannot be repaired",
                self.partition,
            )
            return []
        start = 0
        while True:
            failed: list[int] = []
            bad = restored._replay(journal[start:], check=True, failed=failed)
            found.extend(start + i for i in failed)
            if bad is None:
                break
            index = start + bad
            found.append(index)
            restored = self._rebuilt_from_base()
            restored._replay(
                [e if i not in found else skipped_entry(e) for i, e in enumerate(journal[:index])],
                check=False,
            )
            restored.skip(journal[index][2], label=journal[index][0] == "l")
            start = index + 1
        culprits = [
            Culprit("labels" if journal[i][0] == "l" else "events", journal[i][2], journal[i][4])
            for i in sorted(found)
        ]
        self._adopt(restored)
        self.rebase()
        self.culprits.extend(culprits)
        for c in culprits:
            logger.error(
                "partition %d: learning %s offset %d left the model non-finite; undone "
                "(the record goes to the dead-letter topic)",
                self.partition,
                c.topic,
                c.offset,
            )
        return culprits
