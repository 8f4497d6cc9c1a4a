"""The private names of faust, mode, aiokafka and River riverbed touches, against the installed
ones (``riverbed.kafka.compat``, ``riverbed.learning.river_compat``)."""

from __future__ import annotations

from typing import Any

import faust
import pytest

from riverbed.kafka import compat
from riverbed.learning import river_compat


def test_every_private_name_is_there_in_the_installed_libraries() -> None:
    compat.check()  # raises IncompatibleLibrary naming what is missing
    compat.check(tests=True)  # and those only riverbed's tests use
    river_compat.check(tests=True)  # River's


def test_a_name_only_tests_use_does_not_stop_a_worker() -> None:
    gone = compat.Private("mode-streaming", "mode.worker:Worker", "_renamed_setup", "method",
                          "a test's", tests_only=True)  # fmt: skip
    compat.check((*compat.PRIVATE, gone))
    with pytest.raises(compat.IncompatibleLibrary, match="_renamed_setup"):
        compat.check((*compat.PRIVATE, gone), tests=True)


def test_a_missing_name_stops_start_up_naming_library_version_and_name() -> None:
    gone = compat.Private("aiokafka", "aiokafka.consumer.fetcher:Fetcher", "_renamed_wait",
                          "attribute", "read into every FetchRequest")  # fmt: skip
    with pytest.raises(compat.IncompatibleLibrary) as info:
        compat.check((*compat.PRIVATE, gone))
    from importlib.metadata import version

    assert f"aiokafka {version('aiokafka')}: aiokafka.consumer.fetcher.Fetcher._renamed_wait" in (
        str(info.value)
    )


def test_channel_queues_are_the_iterating_agents_queues() -> None:
    app = faust.App("riverbed-compat-test", broker="memory://", store="memory://")
    channel = app.channel(maxsize=2)
    assert compat.channel_queues(channel) == []
    sub: Any = channel.clone(is_iterator=True)  # what an agent's stream iterates
    assert compat.channel_queues(channel) == [sub.queue]
