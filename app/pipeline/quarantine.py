"""Poison-pill quarantine: a record that kills its process is dead-lettered, not retried
until the machine gives up.

A model's native code can end the process on one record (SIGSEGV in a C extension, an
abort, the OOM killer): no Python exception, so the processor's catch-all never sees it,
and every restart reads the same record again from the last committed offset and dies
again. Kafka cannot tell a consumer that crashed on a record from one that was killed,
and neither Faust, River nor Kafka Streams keep anything that could, so riverbed keeps a
note of what it is handling:

* before a run of records goes to the learner, its ``(topic, partition, first, last)``
  is written to a small memory-mapped file, and cleared after: two ``struct.pack_into``
  on a shared file mapping (~0.3 µs a run), which the kernel keeps whatever ends the
  process;
* at start, a mark still set means the previous process died handling that run: it
  becomes a *crash* in the ledger (a small JSON file, written only then and when a
  crash is passed);
* records inside a crash's range are handled one at a time, each marked alone, so a
  second crash names one record;
* a record that ``RIVERBED_QUARANTINE_AFTER`` crashes happened on, the last of them on
  it alone, is dead-lettered with stage ``quarantine`` and never learned (the offset is
  handled, so exactly-once holds for every other record);
* a crash is forgotten once every record of its range has been handled or quarantined.

A kill -9 or a power cut mid-run counts as a crash too: it only makes the next start
handle that run one record at a time. The files are per web port (one per worker on a
host, whatever the data directory is shared with).

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> q = Quarantine.open(d, "w", after=2, topics=("events", "labels"))
>>> q.mark("events", 3, 100, 140)        # the process dies here...
>>> q = Quarantine.open(d, "w", after=2, topics=("events", "labels"))
>>> [(c.topic, c.partition, c.first, c.last) for c in q.crashes]
[('events', 3, 100, 140)]
>>> q.suspect("events", 3, 120, 600), q.suspect("events", 3, 141, 600)
(True, False)
>>> q.mark("events", 3, 121, 121)        # ...and again, on 121 alone
>>> q = Quarantine.open(d, "w", after=2, topics=("events", "labels"))
>>> q.quarantined("events", 3, 121), q.quarantined("events", 3, 120)
(True, False)
>>> q.passed("events", 3, 140)
>>> q.crashes
[]

"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

__all__ = ["Crash", "Quarantine"]

logger = logging.getLogger(__name__)

# busy, topic (0: events, 1: labels), partition, first offset, last offset
_MARK = struct.Struct("<qqqqq")
_IDLE = _MARK.pack(0, 0, 0, 0, 0)
LEDGER_MAX = 64  # crashes remembered (the oldest go first): a crash loop adds one a start


@dataclass(frozen=True)
class Crash:
    """A process died while handling ``topic[partition]`` offsets ``first..last``."""

    topic: str
    partition: int
    first: int
    last: int
    at: float  # when the next process found it (epoch s)

    def covers(self, topic: str, partition: int, offset: int) -> bool:
        return (
            self.topic == topic
            and self.partition == partition
            and self.first <= offset <= self.last
        )


class Quarantine:
    """The in-flight mark and the crash ledger of one worker process (see the module)."""

    def __init__(self, directory: Path, name: str, after: int, topics: tuple[str, str]) -> None:
        self.after = after
        self.topics = topics
        self.ledger = directory / f"crashes-{name}.json"
        self.crashes: list[Crash] = []
        path = directory / f"inflight-{name}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _MARK.size:
                os.ftruncate(fd, _MARK.size)
            self._map = mmap.mmap(fd, _MARK.size)
        finally:
            os.close(fd)
        self._pack = _MARK.pack_into

    @classmethod
    def open(
        cls, directory: str | Path, name: str, *, after: int, topics: tuple[str, str]
    ) -> Quarantine:
        """The quarantine of worker ``name``: the last process's unfinished run, if any,
        recorded as a crash."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        q = cls(d, name, after, topics)
        if q.ledger.exists():
            try:
                q.crashes = [Crash(**c) for c in orjson.loads(q.ledger.read_bytes())]
            except (ValueError, TypeError) as exc:  # a torn or foreign file: start afresh
                logger.warning("ignoring the crash ledger %s: %s", q.ledger, exc)
        busy, kind, partition, first, last = _MARK.unpack_from(q._map)
        if busy:
            crash = Crash(topics[kind], partition, first, last, time.time())
            q.crashes = [*q.crashes, crash][-LEDGER_MAX:]
            q._save()
            q.clear()
            n = q.crashes_on(crash.topic, partition, first)
            logger.warning(
                "the previous process died handling %s[%d] offsets %d..%d (crash %d there): "
                "they are handled one at a time until they pass; a record %d crashes land on "
                "is dead-lettered (RIVERBED_QUARANTINE_AFTER)",
                crash.topic, partition, first, last, n, after,
            )  # fmt: skip
        return q

    # -- per run: cheap --------------------------------------------------------------
    def mark(self, topic: str, partition: int, first: int, last: int) -> None:
        """``topic[partition]`` offsets ``first..last`` are being handled."""
        self._pack(self._map, 0, 1, topic != self.topics[0], partition, first, last)

    def clear(self) -> None:
        """Nothing is being handled."""
        self._map[: _MARK.size] = _IDLE

    # -- only while there are crashes ------------------------------------------------
    def suspect(self, topic: str, partition: int, first: int, last: int) -> bool:
        """Whether offsets ``first..last`` overlap a crash: handle them one at a time."""
        return any(
            c.topic == topic and c.partition == partition and c.first <= last and first <= c.last
            for c in self.crashes
        )

    def quarantined(self, topic: str, partition: int, offset: int) -> bool:
        """Whether ``after`` crashes happened on ``offset``, one of them on it alone."""
        on = [c for c in self.crashes if c.covers(topic, partition, offset)]
        return len(on) >= self.after and any(c.first == c.last for c in on)

    def crashes_on(self, topic: str, partition: int, offset: int) -> int:
        return sum(c.covers(topic, partition, offset) for c in self.crashes)

    def passed(self, topic: str, partition: int, offset: int) -> None:
        """Every record of ``topic[partition]`` up to ``offset`` is handled: crashes whose
        range ends there are over."""
        kept = [
            c
            for c in self.crashes
            if not (c.topic == topic and c.partition == partition and c.last <= offset)
        ]
        if len(kept) != len(self.crashes):
            self.crashes = kept
            self._save()

    def _save(self) -> None:
        tmp = self.ledger.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps([asdict(c) for c in self.crashes]))
        os.replace(tmp, self.ledger)

    def describe(self) -> list[dict[str, object]]:
        """The crashes not yet passed, for ``/models``."""
        return [asdict(c) for c in self.crashes]
