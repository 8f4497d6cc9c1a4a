"""The one Faust agent: batches from the stream -> Processor -> buffered sends.

Events and labels are one Faust topic with two names, consumed by one agent, so a
partition's events and labels are handled by one coroutine in offset order per topic.
The agent takes records in batches (``stream.take_events``) and hands each output to
the aiokafka producer Faust runs, without waiting for its delivery. Not Faust's
``send_soon``: its ProducerBuffer publishes one message at a time, and Faust's
conductor stops consuming until that buffer ebbs, which held the worker at about
2,000 events/s (profiled: the loop mostly idle, commits taking 3-4 s to flush).
aiokafka batches by itself. Each message is held by the
:class:`~app.checkpoint.Checkpointer` (one extra reference) until a snapshot that
includes it is durable, so Faust commits its offset only then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from app.checkpoint import Checkpointer
from app.processor import Processor

__all__ = ["register"]

logger = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 60.0  # longest wait for a newly assigned partition's snapshot


def register(
    app: faust.App,
    source: faust.TopicT,
    processor: Processor,
    checkpointer: Checkpointer,
    *,
    batch_max: int,
    batch_within: float,
) -> Any:
    """Attach the learning agent to ``app``; return it."""
    handle = processor.handle
    hold = checkpointer.hold
    learners = processor.learners
    metrics = processor.metrics

    @app.agent(source, name="riverbed.learn")
    async def learn(stream: faust.StreamT) -> None:
        checkpointer.bind(asyncio.get_running_loop())
        # Faust's own aiokafka producer (started before agents); its flush() still runs
        # before every commit, and the checkpointer awaits each delivery anyway.
        send = app.producer._ensure_producer().send  # type: ignore[attr-defined]  # aiokafka driver
        # StreamT, the interface faust types agents with, predates take_events.
        batches = stream.take_events(batch_max, within=batch_within)  # type: ignore[attr-defined]
        async for batch in batches:
            t0 = time.perf_counter()
            for event in batch:
                m = event.message
                if not learners.has(m.partition):
                    try:
                        await asyncio.wait_for(
                            learners.wait_installed(m.partition), INSTALL_TIMEOUT_S
                        )
                    except TimeoutError:
                        # Not ours after all (a stale record): the owner handles it.
                        logger.warning(
                            "skipping %s[%d]@%d: partition not assigned here",
                            m.topic,
                            m.partition,
                            m.offset,
                        )
                        continue
                out = handle(
                    m.topic,
                    m.partition,
                    m.offset,
                    int(m.timestamp * 1000),
                    m.key,
                    m.value,
                    m.headers,
                )
                fut = None
                if out is not None:
                    fut = await send(out.topic, out.value, key=out.key,
                                     partition=out.partition, headers=out.headers)  # fmt: skip
                hold(m, m.partition, fut)
            if processor.extra:
                for out in processor.extra:
                    checkpointer.track(
                        await send(out.topic, out.value, key=out.key, partition=out.partition)
                    )
                processor.extra.clear()
            if metrics is not None:
                metrics.batch.observe(time.perf_counter() - t0)
            if checkpointer.due():
                checkpointer.request()

    return learn
