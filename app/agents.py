"""The one Faust agent: batches from the stream -> Processor -> buffered sends.

Events and labels are one Faust topic with two names, consumed by one agent, so a
partition's events and labels are handled by one coroutine in offset order per topic.
The agent takes records in batches (``stream.take_events``) and publishes with
``send_soon`` (buffered, not awaited per record): Faust flushes its producer before it
commits offsets, so a record's offset is committed only after its prediction or dead
letter was written (Quix's checkpoint order: flush outputs, then commit).
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from app.processor import Processor

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(
    app: faust.App,
    source: faust.TopicT,
    outputs: dict[str, faust.TopicT],
    processor: Processor,
    *,
    batch_max: int,
    batch_within: float,
) -> Any:
    """Attach the learning agent to ``app``; return it."""
    handle = processor.handle

    @app.agent(source, name="riverbed.learn")
    async def learn(stream: faust.StreamT) -> None:
        # StreamT, the interface faust types agents with, predates take_events.
        batches = stream.take_events(batch_max, within=batch_within)  # type: ignore[attr-defined]
        async for batch in batches:
            for event in batch:
                m = event.message
                out = handle(
                    m.topic,
                    m.partition,
                    m.offset,
                    int(m.timestamp * 1000),
                    m.key,
                    m.value,
                    m.headers,
                )
                if out is not None:
                    outputs[out.topic].send_soon(
                        key=out.key, value=out.value, partition=out.partition, headers=out.headers
                    )

    return learn
