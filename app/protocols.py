"""The small interfaces that cross riverbed's modules (structural: nothing subclasses them).

They say exactly which part of a collaborator a module uses: of aiokafka's
``ConsumerRecord`` the five fields the processor reads, of ``AIOKafkaProducer`` the
three calls the agent and the checkpoint make, of the learners' registry what the
checkpointer needs. Tests pass plain lists, NamedTuples and fakes through them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from riverbed.learning.learner import PartitionLearner

__all__ = ["LearnerRegistry", "RecordProducer", "SourceRecord"]


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


class LearnerRegistry(Protocol):
    """What the checkpointer needs of the partitions' learners (``Learners``)."""

    def items(self) -> list[tuple[int, PartitionLearner]]: ...
    def has(self, partition: int) -> bool: ...
    def get(self, partition: int) -> PartitionLearner: ...
    def replace(self, partition: int, learner: PartitionLearner) -> None: ...
