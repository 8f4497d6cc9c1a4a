"""``riverbed tail`` papercuts of issue 15 against the real broker: a missing topic, and a
reader (``| head``) that leaves."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.helpers import ROOT
from tests.integration.helpers import Names, produce, riverbed, riverbed_env

TAIL_EXIT_TIMEOUT_S = 30.0  # the idle check runs once a second


def _topics(bootstrap: str) -> set[str]:
    async def read() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(read())


def test_tail_of_a_missing_topic_fails_without_creating_it(kafka: str, names: Names) -> None:
    missing = names.topic("nosuch")
    res = riverbed("tail", missing, env=riverbed_env(kafka, names), timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (
        f"riverbed: error: topic {missing!r} does not exist at RIVERBED_BROKER={kafka}"
    )
    # The local broker auto-creates topics a client asks metadata of: tail never did.
    assert missing not in _topics(kafka)


@pytest.mark.parametrize("n", [1, 3000], ids=["idle-after-the-line", "writing-more-lines"])
def test_tail_into_a_pipe_whose_reader_left_exits_0_quietly(
    kafka: str, names: Names, tmp_path: Path, n: int
) -> None:
    # 1 record: tail is idle once head has its line, and must notice the reader left;
    # 3000: tail fills the pipe and its next write fails (BrokenPipeError).
    topic = names.topic("events")
    produce(kafka, topic, [(None, b'{"id": "%d", "x": {"a": 1}}' % i, 0) for i in range(n)])
    err = tmp_path / "stderr"
    with err.open("wb") as err_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riverbed", "tail", "events"],
            env=riverbed_env(kafka, names),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err_fh,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # `| head -1`
            assert first.startswith(b"p0@0 key=- "), first
            proc.stdout.close()
            code = proc.wait(TAIL_EXIT_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0
    assert err.read_text() == ""
