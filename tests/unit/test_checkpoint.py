"""Snapshot codec: round trip, chunks, and refusal of anything not signed by our key."""

from __future__ import annotations

import asyncio
import itertools
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from river import datasets

from riverbed import models
from riverbed.checkpoint.snapshots import (
    CHUNK,
    GENERATION_HEADER,
    KIND_HEADER,
    MANIFEST,
    Checkpointer,
    OutputRefused,
    SnapshotCodec,
    SnapshotRefused,
    load_key,
    pick_latest,
)
from riverbed.learning.learner import PartitionLearner
from riverbed.records import Event


def _trained(name: str = "logreg", n: int = 300) -> PartitionLearner:
    learner = PartitionLearner(models.spec(name), partition=1)
    for i, (x, y) in enumerate(itertools.islice(datasets.Phishing(), n)):
        learner.process_event(Event(str(i), x, y if i % 3 else None), offset=i, ts_ms=i)
    return learner


def _as_log(
    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]], start: int = 0
) -> list[Any]:
    return [(start + i, k, v, h) for i, (k, v, h) in enumerate(records)]


@pytest.mark.parametrize("name", ["logreg", "arf", "hst"])
def test_round_trip_continues_identically(name: str) -> None:
    learner = _trained(name)
    codec = SnapshotCodec(b"key", chunk_bytes=4096)
    records = codec.encode(learner)
    restored, refused = pick_latest(codec, 1, _as_log(records))
    assert refused == [] and restored is not None
    assert restored.last_offset == learner.last_offset and restored.learned == learner.learned
    assert list(restored.pending) == list(learner.pending)
    # the restored learner predicts and learns exactly like the original from here on
    for i, (x, y) in enumerate(itertools.islice(datasets.Phishing(), 300, 400), 300):
        a = learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
        b = restored.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
        assert a == b


def test_large_snapshots_are_chunked() -> None:
    codec = SnapshotCodec(b"key", chunk_bytes=1000)
    records = codec.encode(_trained("arf"))
    kinds = [dict(h)[KIND_HEADER] for _, _, h in records]
    assert kinds[-1] == MANIFEST and kinds.count(CHUNK) > 1
    assert all(len(v) <= 1000 for _, v, h in records if dict(h)[KIND_HEADER] == CHUNK)
    meta = orjson.loads(records[-1][1])
    assert meta["chunks"] == kinds.count(CHUNK)
    assert {"events_offset", "labels_offset", "model", "riverbed", "river", "format"} <= set(meta)


def test_a_forged_manifest_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    codec = SnapshotCodec(b"key")
    good = codec.encode(_trained())
    canary = tmp_path / "canary"

    class Boom:
        def __reduce__(self) -> Any:
            return (canary.write_text, ("pwned",))

    blob = pickle.dumps(Boom())
    forged_meta = orjson.loads(good[-1][1]) | {
        "generation": "evil",
        "sha256": "x",
        "size": len(blob),
    }
    forged = [
        (b"1/0", blob, [(KIND_HEADER, CHUNK), (GENERATION_HEADER, b"evil")]),
        (b"1", orjson.dumps(forged_meta), [(KIND_HEADER, MANIFEST), (GENERATION_HEADER, b"evil")]),
    ]
    restored, refused = pick_latest(codec, 1, _as_log(good) + _as_log(forged, start=100))
    assert not canary.exists(), "a forged snapshot was unpickled"
    assert len(refused) == 1 and "signature" in refused[0]
    assert restored is not None and restored.learned == 200, "fell back to the last good one"


def test_other_key_payload_and_model_mismatch_are_refused() -> None:
    learner = _trained()
    records = SnapshotCodec(b"key").encode(learner)
    with pytest.raises(SnapshotRefused, match="signature"):
        SnapshotCodec(b"other").verify(records[-1][1])
    with pytest.raises(SnapshotRefused, match="model"):
        SnapshotCodec(b"key", model_name="arf").verify(records[-1][1])
    tampered = records[0][1][:-1] + bytes([records[0][1][-1] ^ 1])
    with pytest.raises(SnapshotRefused, match="digest"):
        SnapshotCodec(b"key").decode(records[-1][1], {0: tampered})
    restored, refused = pick_latest(
        SnapshotCodec(b"key"), 1, _as_log([(records[0][0], tampered, records[0][2]), records[-1]])
    )
    assert restored is None and "digest" in refused[0]


def test_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    f = tmp_path / "k" / "snapshot.key"
    key = load_key("", f)
    assert load_key("", f) == key and len(key) == 64
    assert f.stat().st_mode & 0o777 == 0o600
    assert load_key("given", f) == b"given"


@pytest.mark.parametrize("capture", ["inline", "fork"])
def test_checkpoint_writes_outputs_then_snapshots_then_makes_offsets_committable(
    capture: str,
) -> None:
    asyncio.run(_checkpoint_order(capture))


async def _checkpoint_order(capture: str) -> None:
    from riverbed.learning.state import Learners

    learners = Learners(models.spec("logreg"))
    order: list[str] = []
    sent: list[Any] = []
    seen_committable: list[int | None] = []
    cp: Checkpointer

    loop = asyncio.get_running_loop()

    def output() -> asyncio.Future[None]:
        # A delivery still in flight when the checkpoint starts: the checkpoint waits
        # for it before any snapshot record, with nothing committable yet.
        delivery = loop.create_future()

        def delivered() -> None:
            # Observed here, asserted after the checkpoint: an assert raised inside a
            # loop callback is only logged, and the test would hang instead of failing.
            seen_committable.append(cp.committable("ev", 0))
            order.append("output")
            delivery.set_result(None)

        loop.call_soon(delivered)
        return delivery

    async def send(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> None:
        # checkpoint() turns an exception of send into a fail-stop: observe, assert after
        seen_committable.append(cp.committable("ev", 0))
        order.append(dict(h)[KIND_HEADER].decode())
        sent.append((k, v, h, p))

    cp = Checkpointer(
        learners,
        SnapshotCodec(b"k", chunk_bytes=500),
        send=send,
        topics=("ev", "lb"),
        every=2,
        interval=60,
        capture=capture,
    )
    for i in range(2):
        learners.get(0).process_event(Event(str(i), {"f": 1.0}, True), offset=i, ts_ms=0)
        cp.track(output(), "pr")
    cp.note(0, 1)
    assert not cp.due()
    cp.note(0, 1)
    assert cp.due()
    captured = learners.get(0)
    await cp.checkpoint()
    assert order[:2] == ["output", "output"] and order[-1] == "manifest"
    assert cp.failed is None
    # nothing committable before the manifest is durable, then its offsets are
    assert seen_committable == [None] * len(order) and cp.committable("ev", 0) == 2
    if capture == "inline":
        # The partition carries on with an equal copy (app/learning/inline.py), not the
        # pickled one; a forked capture pickled the child's objects, the live ones stay.
        assert learners.get(0) is not captured
    assert learners.get(0).learned == captured.learned
    assert "chunk" in order and order.count("manifest") == 1
    assert all(p == 0 for *_, p in sent)
    assert learners.get(0).snapshot_offset == 1 and not cp.due()
    # the consumer may commit up to the record after the last one the snapshot has
    assert cp.committable("ev", 0) == 2
    assert cp.committable("lb", 0) is None  # no label handled yet
    assert cp.committable("other", 0) is None
    # records handled after the capture are not committable until the next checkpoint
    learners.get(0).process_event(Event("2", {"f": 1.0}, True), offset=2, ts_ms=0)
    cp.note(0, 1)
    assert cp.committable("ev", 0) == 2
    cp.assign(set())  # the partition moved away: nothing of it is committed here
    assert cp.committable("ev", 0) is None


def test_checkpoint_of_a_partition_that_moved_away_commits_nothing_for_it() -> None:
    async def scenario() -> None:
        from riverbed.learning.state import Learners

        learners = Learners(models.spec("logreg"))

        async def send(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> None:
            learners.assign(set())  # revoked while the snapshot is being written

        cp = Checkpointer(
            learners, SnapshotCodec(b"k"), send=send, topics=("ev", "lb"), every=1, interval=60
        )
        learners.get(3).process_event(Event("a", {"f": 1.0}, True), offset=0, ts_ms=0)
        cp.note(3, 1)
        await cp.checkpoint()
        assert cp.committable("ev", 3) is None

    asyncio.run(scenario())


def test_a_failed_output_stops_checkpointing_for_good() -> None:
    async def scenario() -> None:
        from riverbed.learning.state import Learners

        learners = Learners(models.spec("logreg"))
        sent: list[bytes] = []
        failures: list[BaseException] = []

        async def send(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> None:
            sent.append(k)

        def delivered() -> asyncio.Future[None]:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

        def refused() -> asyncio.Future[None]:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(OSError("the broker refused the batch"))
            return fut

        cp = Checkpointer(
            learners, SnapshotCodec(b"k"), send=send, topics=("ev", "lb"), every=1,
            interval=60, on_failure=failures.append,
        )  # fmt: skip
        learner = learners.get(0)
        learner.process_event(Event("a", {"f": 1.0}, True), offset=0, ts_ms=0)
        cp.track(delivered(), "pr")
        cp.note(0, 1)
        await cp.checkpoint()
        assert cp.committable("ev", 0) == 1 and sent == [b"0/0", b"0"]
        # offset 1's prediction is refused: no snapshot may cover offset 1, ever
        learner.process_event(Event("b", {"f": 2.0}, False), offset=1, ts_ms=0)
        cp.track(refused(), "pr")
        cp.note(0, 1)
        await cp.checkpoint()
        assert [str(e) for e in failures] == [
            "Kafka refused a record for pr: OSError: the broker refused the batch"
        ]
        assert isinstance(cp.failed, OutputRefused)
        learner.process_event(Event("c", {"f": 3.0}, True), offset=2, ts_ms=0)
        cp.track(delivered(), "pr")
        cp.note(0, 1)
        await cp.checkpoint()
        assert sent == [b"0/0", b"0"], "nothing written after the failure"
        assert cp.committable("ev", 0) == 1, "commits stay at the last durable snapshot"
        cp.fail(RuntimeError("again"))
        assert len(failures) == 1, "the worker is told once"

    asyncio.run(scenario())


def test_a_cancelled_delivery_stops_checkpointing_too() -> None:
    async def scenario() -> None:
        from riverbed.learning.state import Learners

        learners = Learners(models.spec("logreg"))
        sent: list[bytes] = []

        async def send(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> None:
            sent.append(k)

        cp = Checkpointer(
            learners, SnapshotCodec(b"k"), send=send, topics=("ev", "lb"), every=1, interval=60
        )
        learners.get(0).process_event(Event("a", {"f": 1.0}, True), offset=0, ts_ms=0)
        delivery = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(delivery.cancel)  # e.g. the producer stopped
        cp.track(delivery, "pr")
        cp.note(0, 1)
        await cp.checkpoint()
        assert isinstance(cp.failed, OutputRefused)
        assert str(cp.failed) == "the delivery of a record for pr was cancelled"
        assert sent == [] and cp.committable("ev", 0) is None

    asyncio.run(scenario())
