"""`make run`'s demo, bounded by --duration, against the session broker."""

from __future__ import annotations

import re

from tests.integration.helpers import Names, free_port, riverbed, riverbed_env


def test_demo_shows_live_accuracy_and_stops_cleanly(kafka: str, names: Names) -> None:
    env = riverbed_env(kafka, names, web_port=free_port())
    # The session's broker is not the one `riverbed broker start` keeps: refused.
    refused = riverbed("demo", "--duration", "4", env=env, timeout=60)
    assert refused.returncode == 2 and "--use-running-broker" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    use = ("--use-running-broker", "--rate", "300")
    res = riverbed("demo", "--duration", "4", *use, env=env, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "/models" in res.stdout and "Ctrl-C" in res.stdout
    done = re.search(r"done: ([\d,]+) predictions, prequential accuracy ([\d.]+)%", res.stdout)
    assert done, res.stdout
    assert int(done.group(1).replace(",", "")) > 0
    assert 0 < float(done.group(2)) <= 100
    # The one candidate's rolling metric from /models, starred as the champion.
    assert re.search(r"accuracy \(last 1,000\): logreg★ [\d.]+%", res.stdout), res.stdout
    assert re.search(r"drift detections: \d+.*; promotions: 0", res.stdout), res.stdout
    assert "stopped the worker" in res.stdout and "resuming" not in res.stdout
    # A second run says it resumes the first one's models; --fresh starts clean.
    again = riverbed("demo", "--duration", "1", *use, env=env, timeout=180)
    assert again.returncode == 0 and "resuming the previous run" in again.stdout, again.stdout
    fresh = riverbed("demo", "--duration", "1", "--fresh", *use, env=env, timeout=180)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "--fresh: deleted the previous run's topics" in fresh.stdout
    assert "resuming" not in fresh.stdout


def test_demo_shows_each_candidate_detected_drifts_and_promotions(kafka: str, names: Names) -> None:
    """Issue 18 items 5 and 7: `RIVERBED_MODEL=logreg,hoeffding make run`."""
    env = riverbed_env(
        kafka, names, web_port=free_port(), model="logreg,hoeffding", promotion_window=300
    )
    res = riverbed("demo", "--duration", "8", "--rate", "1500", "--use-running-broker", env=env,
                   timeout=180)  # fmt: skip
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "RIVERBED_PROMOTION=auto" in out, "the demo turns promotion on for several candidates"
    ticks = re.findall(r"accuracy \(last 1,000\): (\S+) ([\d.]+)%  (\S+) ([\d.]+)%", out)
    assert ticks, out
    assert {ticks[-1][0].split("★")[0], ticks[-1][2].split("★")[0]} == {"logreg", "hoeffding"}
    assert any("★" in t[0] + t[2] for t in ticks), "the champion is starred"
    # Markers from the detectors' records on the metrics topic, per candidate, placed in
    # the stream; the stream's own drift only as a labelled reference.
    drifts = re.findall(
        r"▲ drift detected by (logreg|hoeffding)'s detector \((champion|challenger)\), "
        r"partition \d+ offset [\d,]+",
        out,
    )
    assert drifts, out
    assert "reference: the stream's own drift is centred on event 5,000" in out, out
    promotions = re.findall(r"★ promotion: (\w+) replaces (\w+) as champion, partition \d+", out)
    assert promotions, out
    summary = re.search(r"drift detections: (\d+).*; promotions: (\d+)", out)
    assert summary, out
    assert int(summary.group(1)) == len(drifts) and int(summary.group(2)) == len(promotions)
    assert "stopped the worker" in out


def test_closing_the_terminal_stops_the_demo_as_ctrl_c_does(kafka: str, names: Names) -> None:
    import signal
    import subprocess
    import sys

    from tests.helpers import ROOT, wait_for

    env = riverbed_env(kafka, names, web_port=free_port())
    demo = subprocess.Popen(
        [sys.executable, "-m", "riverbed", "demo", "--use-running-broker", "--rate", "200"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    seen: list[str] = []

    def started() -> bool:
        line = demo.stdout.readline()  # type: ignore[union-attr]
        seen.append(line)
        return "Ctrl-C stops the demo" in line or demo.poll() is not None

    wait_for(started, timeout=120, what="the demo running")
    demo.send_signal(signal.SIGHUP)
    out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130, "".join(seen) + out
    assert "stopped the worker" in out
