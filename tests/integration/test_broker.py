"""The local broker: round trips with aiokafka and kcat, and the broker command."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid

import pytest

from tests.integration.helpers import consume, free_port, produce, riverbed, riverbed_env


def test_aiokafka_round_trip(kafka: str) -> None:
    topic = f"rt-{uuid.uuid4().hex[:8]}"
    sent = [(f"k{i}".encode(), f"v{i}".encode(), None) for i in range(20)]
    produce(kafka, topic, sent)
    got = consume(kafka, topic, 20)
    assert sorted((r.key, r.value) for r in got) == sorted((k, v) for k, v, _ in sent)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by make setup")
def test_kcat_round_trip(kafka: str) -> None:
    topic = f"kc-{uuid.uuid4().hex[:8]}"
    lines = "\n".join(f"key{i}:value{i}" for i in range(10)) + "\n"
    subprocess.run(
        ["kcat", "-b", kafka, "-P", "-t", topic, "-K:"],
        input=lines,
        text=True,
        check=True,
        timeout=60,
    )
    out = subprocess.run(
        ["kcat", "-b", kafka, "-C", "-t", topic, "-e", "-q", "-f", "%k=%s\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert sorted(out.stdout.split()) == sorted(f"key{i}=value{i}" for i in range(10))
    meta = subprocess.run(
        ["kcat", "-b", kafka, "-L"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "1 brokers" in meta.stdout


def test_second_start_is_harmless(kafka: str, names: object) -> None:
    port = kafka.rsplit(":", 1)[1]
    env = riverbed_env(kafka, names)  # type: ignore[arg-type]
    res = riverbed("broker", "start", "--port", port, env=env)
    assert res.returncode == 0, res.stderr
    assert "already" in res.stdout
    status = riverbed("broker", "status", "--port", port, env=env)
    assert status.returncode == 0 and kafka in status.stdout


def test_start_on_a_taken_port_fails_clearly(kafka: str, names: object) -> None:
    port = free_port(pair=True)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        res = riverbed("broker", "start", "--port", str(port), env=riverbed_env(kafka, names))  # type: ignore[arg-type]
    assert res.returncode == 2
    assert f"port {port}" in res.stderr and "taken" in res.stderr


def test_stop_only_stops_what_it_started(kafka: str, names: object) -> None:
    port = free_port(pair=True)
    res = riverbed("broker", "stop", "--port", str(port), env=riverbed_env(kafka, names))  # type: ignore[arg-type]
    assert res.returncode == 0
    assert "no broker started by riverbed" in res.stdout
    status = riverbed("broker", "status", "--port", str(port), env=riverbed_env(kafka, names))  # type: ignore[arg-type]
    assert status.returncode == 3
