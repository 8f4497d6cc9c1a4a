"""Faust's partition assignor, with the one restart it cannot take.

With static membership (``RIVERBED_GROUP_INSTANCE_ID``, set per slot by the
supervisor), a member that rejoins gets back the assignment the group's leader made for
it before, without a rebalance (KIP-345). Faust's assignor carries each member's URL in
that assignment and asserts it is the member's own: a worker restarted at another URL
(another ``RIVERBED_WEB_PORT`` or advertised address: a rescheduled pod, a moved
process) failed the assertion inside aiokafka's coordination routine, which then
stopped, and the worker never became ready, saying only "Unexpected error in
coordinator routine". This assignor takes the assignment (its partitions are the
member's: Faust checks them first) and asks to join again, so that the leader assigns
with the member's new URL, which ``/predict``'s forwarding reads.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.assignor import PartitionAssignor

from riverbed.kafka import compat

__all__ = ["Assignor"]

logger = logging.getLogger(__name__)


class Assignor(PartitionAssignor):
    """Faust's :class:`~faust.assignor.PartitionAssignor`, taking a static member's
    previous assignment made for another URL of it."""

    def on_assignment(self, assignment: Any) -> None:
        try:
            super().on_assignment(assignment)
        except AssertionError:
            given, mine = compat.assignment_url(self, assignment), str(self.app.conf.canonical_url)
            if given == mine:
                raise
            logger.warning(
                "the group gave this member the assignment it made for %s, its URL before "
                "a restart (static membership); this worker is at %s: taking the "
                "partitions and joining again so that the group learns the new URL",
                given, mine,
            )  # fmt: skip
            compat.request_rejoin(compat.thread_consumer(compat.consumer_thread(self.app.consumer)))
