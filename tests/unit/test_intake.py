"""Intake: the consumer's no-wait hand-off of a fetch to the agent, on a real Faust channel."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from riverbed.kafka import compat
from riverbed.kafka.intake import Intake


class _Checkpoint:
    async def checkpoint(self) -> None:
        return None

    def committable(self, topic: str, partition: int) -> int | None:
        return None


def _intake(maxsize: int) -> tuple[faust.App, Any, Intake]:
    """A Faust app, its channel of ``maxsize`` fetches, and an intake on it (in a
    coroutine: the channel takes the running loop)."""
    app = faust.App("riverbed-intake-test", broker="memory://", store="memory://")
    channel = app.channel(maxsize=maxsize)
    return app, channel, Intake(channel, {"ev"}, checkpoint=_Checkpoint())


def test_deliver_nowait_queues_only_when_nothing_would_wait() -> None:
    async def scenario() -> None:
        _app, channel, intake = _intake(maxsize=2)
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


def test_a_put_cancelled_by_a_flow_stop_is_a_dropped_fetch_not_a_crash() -> None:
    """Faust's rebalance suspends the flow and clears the agents' queues in one step;
    mode's ``ThrowableQueue.clear`` cancels the puts waiting on a full queue. The
    consumer waits on ``deliver`` with mode's ``wait_first``, which reads
    ``f.exception()`` of every finished future: a put cancelled that way raised
    CancelledError out of the fetcher, which Faust took for a restart and crashed the
    worker (seen in test_hosts: a zombie's return under load)."""

    async def scenario() -> None:
        import mode

        app, channel, intake = _intake(maxsize=1)
        sub = channel.clone(is_iterator=True)
        intake.attach()
        app.flow_control.resume()  # a running worker's flow
        assert intake.deliver_nowait({("ev", 0): [1]})  # the queue is full now
        service = mode.Service()
        suspend_flow = asyncio.Event()
        waiting = asyncio.ensure_future(
            service.wait_first(intake.deliver({("ev", 0): [2]}), suspend_flow.wait())
        )
        while not compat.waiting_puts(sub.queue):  # until the put waits on the full queue
            await asyncio.sleep(0)
        suspend_flow.set()  # what consumer.stop_flow() and flow_control.clear() do,
        sub.queue.clear()  # in one step
        await waiting  # no CancelledError: the fetch is dropped, as on any flow stop
        # Neither fetch reaches the agent; the drain that follows every flow stop
        # starts a new epoch, and with it nothing counts as on its way.
        assert intake.in_transit("ev", 0)
        await intake.drain()
        assert not intake.in_transit("ev", 0)

    asyncio.run(scenario())
