"""`make run`'s demo, bounded by --duration, against the session broker."""

from __future__ import annotations

import re

from tests.integration.helpers import Names, free_port, riverbed, riverbed_env


def test_demo_shows_live_accuracy_and_stops_cleanly(kafka: str, names: Names) -> None:
    env = riverbed_env(kafka, names, web_port=free_port())
    res = riverbed("demo", "--duration", "8", "--rate", "300", env=env, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "/models" in res.stdout and "Ctrl-C" in res.stdout
    done = re.search(r"done: ([\d,]+) predictions, prequential accuracy ([\d.]+)%", res.stdout)
    assert done, res.stdout
    assert int(done.group(1).replace(",", "")) > 0
    assert 0 < float(done.group(2)) <= 100
    assert "stopped the worker" in res.stdout
