"""The forked capture (RIVERBED_CHECKPOINT_CAPTURE=fork): the child's pickles are the
learners' state at the fork; a failed child fails the checkpoint; the learner's undo
journal keeps what it handled while the child pickled."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import threading

import pytest
from river import datasets

from riverbed import models
from riverbed.checkpoint.capture import CaptureFailed, fork_capture
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
        assert blobs[p].blob == blob and not blobs[p].suspect
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
