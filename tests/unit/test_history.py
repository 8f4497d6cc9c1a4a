"""/history: the bounded ring, the sampler, the gateway's merge; the page's y ticks."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from riverbed.serving.history import POINTS, History, Sampler
from riverbed.supervisor.gateway import merge_histories

PAGE = Path(__file__).resolve().parents[2] / "app" / "serving" / "static" / "index.html"


class FakeLearner:
    def __init__(self, events: int) -> None:
        self.events = events

    def describe(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "last_offset": self.events - 1,
            "candidates": {
                "logreg": {"metric": {"value": 0.9}, "rolling": {"value": 0.8}},
                "hoeffding": {"metric": {"value": 0.7}, "rolling": None},
            },
        }


class FakeLearners:
    def __init__(self, parts: dict[int, FakeLearner]) -> None:
        self.parts = parts

    def items(self) -> list[tuple[int, FakeLearner]]:
        return sorted(self.parts.items())


def test_the_ring_keeps_at_most_points_samples_per_partition() -> None:
    assert POINTS >= 1800  # 30 minutes at one sample a second
    history = History(points=50)
    learners = FakeLearners({0: FakeLearner(10), 3: FakeLearner(20)})
    sampler = Sampler(history, learners, lag=lambda p: p)  # type: ignore[arg-type]
    for i in range(500):
        learners.parts[0].events += 1
        sampler.take(1000.0 + i)
    doc = history.document()
    assert sorted(doc["partitions"]) == ["0", "3"]
    for samples in doc["partitions"].values():
        assert len(samples) == 50  # bounded, the newest kept
        assert [s[0] for s in samples] == [1000.0 + i for i in range(450, 500)]
    assert doc["partitions"]["0"][-1] == [
        1499.0,
        510,
        509,
        0,
        {"logreg": [0.8, 0.9], "hoeffding": [None, 0.7]},
    ]
    assert len(orjson.dumps(doc)) < 50 * 2 * 200  # bytes: points x partitions x a sample


def test_a_revoked_partition_is_forgotten_and_the_timer_samples() -> None:
    history = History(points=5)
    learners = FakeLearners({0: FakeLearner(1), 1: FakeLearner(2)})
    sampler = Sampler(history, learners, lag=lambda p: None)  # type: ignore[arg-type]
    asyncio.run(sampler.sample())
    del learners.parts[1]
    asyncio.run(sampler.sample())
    parts = history.document()["partitions"]
    assert list(parts) == ["0"] and len(parts["0"]) == 2 and parts["0"][0][3] is None


def test_the_gateway_merges_per_partition_the_later_series_winning() -> None:
    a = History(points=5)
    b = History(points=5)
    a.add(0, [1.0, 1, 0, 0, {}])
    a.add(2, [1.0, 1, 0, 0, {}])
    b.add(1, [2.0, 5, 4, 1, {}])
    b.add(2, [3.0, 9, 8, 0, {}])  # partition 2 moved to b: its series is the later
    merged = merge_histories([a.document(), b.document()])
    assert list(merged["partitions"]) == ["0", "1", "2"]
    assert merged["partitions"]["2"] == [[3.0, 9, 8, 0, {}]]
    assert merge_histories([])["partitions"] == {}


CASES = [  # lo, hi, integer
    (0, 1, True),
    (0, 0, True),
    (0, 3, True),
    (0, 7, True),
    (0, 1234, True),
    (0.8123, 0.8161, False),
    (0, 1, False),
    (0.5, 0.5, False),
    (0, 0.0004, False),
    (12.5, 980.2, False),
]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="make setup installs chromium")
def test_the_pages_y_ticks_are_nice_and_never_repeat(tmp_path: Path) -> None:
    script = PAGE.read_text()
    funcs = "".join(re.findall(r"^function (?:niceTicks|tickLabel)\(.*?^}\n", script,
                               re.S | re.M))  # fmt: skip
    assert "niceTicks" in funcs and "tickLabel" in funcs
    page = tmp_path / "ticks.html"
    page.write_text(
        "<html><body><pre id=out></pre><script>" + funcs
        + f"const cases = {json.dumps(CASES)};"
        + "document.getElementById('out').textContent = JSON.stringify(cases.map(([lo, hi, i])"
        + " => { const n = niceTicks(lo, hi, i); return {n, labels: n.ticks.map(v =>"
        + " tickLabel(v, n.step, i ? 'int' : 'num')), pct: n.ticks.map(v =>"
        + " tickLabel(v, n.step, 'pct'))}; }));</script></body></html>"
    )  # fmt: skip
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found, dom[:1000]
    results = json.loads(found.group(1).replace("&quot;", '"'))
    for (lo, hi, integer), r in zip(CASES, results, strict=True):
        n = r["n"]
        assert n["lo"] <= lo and n["hi"] >= hi, (lo, hi, n)
        assert 2 <= len(n["ticks"]) <= 7, (lo, hi, n)
        assert len(set(r["labels"])) == len(r["labels"]), (lo, hi, r["labels"])
        if not integer and hi <= 1:
            assert len(set(r["pct"])) == len(r["pct"]), (lo, hi, r["pct"])
        if integer:
            assert all(float(x).is_integer() for x in n["ticks"]) and n["step"] >= 1
            assert all(re.fullmatch(r"-?\d+", x) for x in r["labels"]), r["labels"]
        mantissa = n["step"] / 10 ** math.floor(math.log10(n["step"]))
        assert round(mantissa, 6) in (1, 2, 5), n
    assert results[0]["labels"] == ["0", "1"]  # lag 0..1: "0, 1", not "1, 1, 1, 0, 0"
