"""The small interfaces that cross riverbed's modules (structural: nothing subclasses them).

They say exactly which part of a collaborator a module uses: of aiokafka's
``ConsumerRecord`` the five fields the processor reads, of ``AIOKafkaProducer`` the
three calls the agent and the checkpoint make. Tests pass plain lists, NamedTuples and
fakes through them. They import nothing of riverbed (the bottom layer of
``[tool.importlinter]``); what the checkpointer needs of the learners' registry is
``riverbed.learning.state.LearnerRegistry``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["Assignments", "Checkpoint", "RecordProducer", "SourceRecord"]


class SourceRecord(Protocol):
    """A consumed Kafka record: aiokafka's ``ConsumerRecord`` has these fields."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # ms
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class RecordProducer(Protocol):
    """What riverbed calls on an aiokafka producer (``AIOKafkaProducer``)."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...

    def create_batch(self) -> Any: ...

    async def send_batch(
        self, batch: Any, topic: str, *, partition: int
    ) -> asyncio.Future[Any]: ...


class Checkpoint(Protocol):
    """What the consumer's side needs of the checkpoint
    (``riverbed.checkpoint.snapshots.Checkpointer``): one written once the agent is idle
    during a drain, and the offset it allows committing."""

    async def checkpoint(self) -> None: ...

    def committable(self, topic: str, partition: int) -> int | None: ...


class Assignments(Protocol):
    """What the transport needs of the recovery (``riverbed.checkpoint.recovery.Recovery``):
    to be told an assignment begins, and where each partition's records resume."""

    def assigning(self) -> None: ...

    async def positions(self) -> dict[tuple[str, int], int]: ...
