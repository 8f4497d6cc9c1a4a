"""The forked capture (RIVERBED_CHECKPOINT_CAPTURE=fork): the child's pickles are the
learners' state at the fork; a failed child fails the checkpoint; the learner's undo
journal keeps what it handled while the child pickled; auto forks for learners whose
size is not known yet, and otherwise takes the capture measured to hold the loop less."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
import threading
import time

import pytest
from river import datasets

from riverbed import models
from riverbed.checkpoint.capture import CaptureFailed, CaptureThread, collapse_heap, fork_capture
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


class ChildsView:
    """Pickles as what the capture child sees: its open descriptors, and the signal
    it is sent when its parent dies (Linux's PR_GET_PDEATHSIG)."""

    def __reduce__(self) -> object:
        import ctypes

        signum = ctypes.c_int(0)
        ctypes.CDLL(None).prctl(2, ctypes.byref(signum), 0, 0, 0)  # PR_GET_PDEATHSIG
        return (dict, ({"fds": sorted(map(int, os.listdir("/proc/self/fd"))),
                        "pdeathsig": signum.value},))  # fmt: skip


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux's /proc and prctl")
def test_the_child_holds_no_descriptor_of_the_worker_and_dies_with_it() -> None:
    # A worker killed -9 mid-capture left its child holding the worker's HTTP port
    # (inherited), and the worker's restart died on "address already in use".
    import signal
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        blob = asyncio.run(fork_capture({0: ChildsView()}))[0].blob
        seen = pickle.loads(blob)
        assert listening.fileno() not in seen["fds"]
    # stdin, stdout, stderr, the pipe and the listing's own descriptor: nothing else.
    assert len(seen["fds"]) <= 5, seen
    assert seen["pdeathsig"] == signal.SIGKILL


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
    assert [e[2] for e in learner.journal] == list(range(100, 120))
    base = pickle.loads(learner.journal_base)
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


def _checkpointer(sizes: tuple[int, ...]) -> tuple[Checkpointer, Learners]:
    learners = Learners(models.spec("logreg"))
    for p, size in enumerate(sizes):
        learners.get(p).snapshot_bytes = size

    async def send(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> None:
        pass

    cp = Checkpointer(learners, SnapshotCodec(b"k" * 32), send=send, topics=("e", "l"),
                      every=10**9, interval=10**9)  # fmt: skip
    assert cp.capture == "auto"
    return cp, learners


@pytest.mark.parametrize(("sizes", "forks"), [
    ((4_000, 4_000), False),          # small in all: inline is tried (and measured)
    ((4_000, 0), True),               # one learner's size not known yet
    ((4_000, 300_000), True),         # too large to try inline
    ((40_000, 40_000), True),         # past the trial's bytes in all
])  # fmt: skip
def test_auto_before_any_inline_capture(sizes: tuple[int, int], forks: bool) -> None:
    cp, learners = _checkpointer(sizes)
    try:
        assert cp._forks(learners.get(p) for p in range(2)) is forks
    finally:
        cp.close()


@pytest.mark.parametrize(("inline_rate", "fork_seconds", "forks"), [
    (0.1e-6, 0.004, False),           # 26 KB at 0.1 µs a byte: 2.6 ms inline < 4 ms fork
    (0.2e-6, 0.004, True),            # 5.2 ms inline > 4 ms fork
    (0.2e-6, None, False),            # no fork measured: the trial's bound (26 KB: inline)
])  # fmt: skip
def test_auto_takes_the_capture_measured_cheaper(
    inline_rate: float, fork_seconds: float | None, forks: bool
) -> None:
    cp, learners = _checkpointer((13_000, 13_000))
    try:
        cp._inline_rate = inline_rate
        cp._fork_floor = fork_seconds
        assert cp._forks(learners.get(p) for p in range(2)) is forks
    finally:
        cp.close()


def test_both_captures_are_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked capture leaves its fork's time; an inline one its cost a byte."""
    cp, learners = _checkpointer((0,))
    try:
        cp.note(0, 1)  # one learner changed, never checkpointed: forked
        asyncio.run(cp.checkpoint())
        assert cp.written == 1 and cp._thread is not None
        assert cp._thread.fork_seconds is not None and cp._thread.fork_seconds > 0
        assert 0 < learners.get(0).snapshot_bytes <= 64 * 1024
        assert cp._inline_rate is None
        assert cp.describe()["last_capture"] == "fork"
        assert cp.describe()["last_capture_loop_seconds"] == round(cp._thread.fork_seconds, 6)
        cp.note(0, 1)  # changed since: the next one is inline (small, never tried)
        asyncio.run(cp.checkpoint())
        assert cp.written == 2
        assert cp._inline_rate is not None and cp._inline_rate > 0
        assert cp.describe()["last_capture"] == "inline"
        assert cp.describe()["last_capture_loop_seconds"] > 0
        # A slow one (preempted, a collection) does not raise the estimate
        rate = cp._inline_rate
        cp.note(0, 1)
        cp._fork_floor = 1.0  # inline again
        real = PartitionLearner.rebuilt

        def slow(self: PartitionLearner) -> PartitionLearner:
            time.sleep(0.05)  # the capture was preempted
            return real(self)

        monkeypatch.setattr(PartitionLearner, "rebuilt", slow)
        asyncio.run(cp.checkpoint())
        assert cp.failed is None
        assert cp.describe()["last_capture_loop_seconds"] >= 0.05
        assert cp._inline_rate == rate
    finally:
        cp.close()


def _anon_huge_bytes() -> int:
    with open("/proc/self/smaps_rollup") as f:
        rollup = f.read()
    return int(rollup.split("AnonHugePages:")[1].split()[0]) * 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="Linux only")
def test_collapse_heap_backs_the_heap_with_huge_pages() -> None:
    """What a fork copies shrinks: the dense anonymous memory is 2 MiB pages after it."""
    done = collapse_heap()
    if done == 0:
        pytest.skip("this kernel refuses MADV_COLLAPSE (Linux < 6.1, or THP off)")
    assert done % (2 << 20) == 0
    # Other threads may split a page by writing to it meanwhile; most stay.
    assert _anon_huge_bytes() >= done // 2
