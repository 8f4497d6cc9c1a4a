"""The forked capture (RIVERBED_CHECKPOINT_CAPTURE=fork): the child's pickles are the
learners' state at the fork; a failed child fails the checkpoint; the learner's undo
journal keeps what it handled while the child pickled; auto forks for large learners
and for those whose size is not known yet."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import threading

import pytest
from river import datasets

from riverbed import models
from riverbed.checkpoint.capture import CaptureFailed, CaptureThread, fork_capture
from riverbed.checkpoint.snapshots import Checkpointer, SnapshotCodec
from riverbed.learning.learner import PartitionLearner
from riverbed.learning.state import Learners
from riverbed.records import Event


def learned(n: int, partition: int = 0) -> PartitionLearner:
    learner = PartitionLearner(models.spec("logreg"), partition=partition)
    for i, (x, y) in enumerate(list(datasets.Phishing())[:n]):
        learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    return learner


def test_the_child_hands_back_each_learners_pickle() -> None:
    learners = {0: learned(50), 3: learned(80, partition=3)}
    blobs = asyncio.run(fork_capture(learners))
    assert set(blobs) == {0, 3}
    for p, learner in learners.items():
        blob = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
        assert blobs[p].blob == blob and not blobs[p].poisoned
        assert blobs[p].sha256 == hashlib.sha256(blob).hexdigest()


def test_a_child_that_cannot_pickle_fails_the_capture_loudly() -> None:
    class Locked:
        lock = threading.Lock()

        def __reduce__(self) -> object:
            return (Locked, (), {"lock": self.lock})

    with pytest.raises(CaptureFailed, match="exited with status 1"):
        asyncio.run(fork_capture({0: Locked()}))


def test_records_handled_during_the_capture_stay_in_the_journal() -> None:
    learners = Learners(models.spec("logreg"))
    learner = learners.get(0)
    data = list(datasets.Phishing())[:120]
    for i, (x, y) in enumerate(data[:100]):
        learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    sent: list[tuple[bytes, bytes]] = []

    async def send(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> None:
        sent.append((k, v))

    async def run() -> None:
        cp = Checkpointer(learners, SnapshotCodec(b"k" * 32), send=send, topics=("e", "l"),
                          every=10**9, interval=10**9, capture="fork")  # fmt: skip
        cp.note(0, 100)
        task = asyncio.ensure_future(cp.checkpoint())
        await asyncio.sleep(0)  # the fork has happened; the child pickles
        for i, (x, y) in enumerate(data[100:], 100):
            learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
        await task
        assert cp.failed is None and cp.written == 1

    asyncio.run(run())
    # The base is the state at the fork (offset 99); the 20 records after it remain.
    assert [e[2] for e in learner._journal] == list(range(100, 120))
    base = pickle.loads(learner._base)
    assert base.last_offset == 99


def test_the_childs_walk_leaves_the_parents_objects_as_they_were() -> None:
    # The walk that confirms a suspect pickle reads every object's __dict__ (which
    # slows a model for good, app/learning/inline.py); forked, it reads the child's.
    learner = learned(50)
    learner.model["MixedScaler"].means["zz"] = float("inf")  # a suspect pickle
    thread = CaptureThread()
    try:
        blobs = asyncio.run(fork_capture({0: learner}, thread=thread))
    finally:
        thread.close()
    assert blobs[0].poisoned
    assert not _has_dict(learner.model["LogisticRegression"])


def _has_dict(obj: object) -> bool:
    import gc

    return any(type(r) is dict and r is getattr(obj, "__dict__", None)
               for r in gc.get_referents(obj))  # fmt: skip


@pytest.mark.parametrize(("sizes", "forks"), [
    ((4_000, 4_000), False),          # every last snapshot small: inline, then copied
    ((4_000, 0), True),               # one learner's size not known yet
    ((4_000, 300_000), True),         # one large learner
])  # fmt: skip
def test_auto_forks_unless_every_learner_is_known_small(
    sizes: tuple[int, int], forks: bool
) -> None:
    learners = Learners(models.spec("logreg"))
    for p, size in enumerate(sizes):
        learners.get(p).snapshot_bytes = size

    async def send(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> None:
        pass

    cp = Checkpointer(learners, SnapshotCodec(b"k" * 32), send=send, topics=("e", "l"),
                      every=10**9, interval=10**9)  # fmt: skip
    assert cp.capture == "auto"
    assert cp._forks(learners.get(p) for p in range(2)) is forks
