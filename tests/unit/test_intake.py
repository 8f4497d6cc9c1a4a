"""Intake: the consumer's no-wait hand-off of a fetch to the agent, on a real Faust channel."""

from __future__ import annotations

import asyncio

import faust

from riverbed.kafka.intake import Intake


def test_deliver_nowait_queues_only_when_nothing_would_wait() -> None:
    async def scenario() -> None:
        app = faust.App("riverbed-intake-test", broker="memory://", store="memory://")
        channel = app.channel(maxsize=2)

        class Checkpoint:
            async def checkpoint(self) -> None:
                return None

            def committable(self, topic: str, partition: int) -> int | None:
                return None

        intake = Intake(channel, {"ev"}, checkpoint=Checkpoint())
        assert not intake.deliver_nowait({("ev", 0): [1]}), "no agent attached yet"
        sub = channel.clone(is_iterator=True)  # what an agent's stream iterates
        intake.attach()
        assert intake.deliver_nowait({("ev", 0): [1]})
        assert intake.deliver_nowait({("ev", 0): [2]})
        assert not intake.deliver_nowait({("ev", 0): [3]}), "the queue is full: wait instead"
        got = [sub.queue.get_nowait().records[("ev", 0)] for _ in range(2)]
        assert got == [[1], [2]]
        assert intake.deliver_nowait({("ev", 0): [3]})  # room again
        await intake.drain()  # a rebalance: what was queued before is stale
        assert not intake.begin(sub.queue.get_nowait())

    asyncio.run(scenario())
