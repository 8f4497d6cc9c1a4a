"""The ``riverbed`` command line without a broker: papercuts of issue 15 and the option
checks of ``produce --file``."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from riverbed.cli import main
from riverbed.devtools.produce import read_lines
from tests.helpers import ROOT

# Generous bounds: the CLI itself gives up on a silent broker after 10 s.
DEAD_BROKER_TIMEOUT_S = 30.0
HELP_TIMEOUT_S = 60.0

# Records every write, directory made and connection of the process it runs in, then
# runs the CLI (``-c`` keeps it out of the tests' own files).
SIDE_EFFECTS_PROBE = """
import os, sys
seen = []
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = (mode and any(c in mode for c in "wax+")) or (
            flags and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes and path != os.devnull:
            seen.append(f"wrote {path}")
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.chmod"):
        seen.append(f"{event} {args[0]}")
    elif event == "socket.connect":
        seen.append(f"connected to {args[1]}")
sys.addaudithook(hook)
from riverbed.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("SIDE EFFECTS:", seen, file=sys.stderr)
sys.exit(code)
"""


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    env.update({f"RIVERBED_{k.upper()}": v for k, v in settings.items()})
    return env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("RIVERBED_"):
            monkeypatch.delenv(k)


def test_config_refuses_an_unknown_model_naming_the_setting(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIVERBED_MODEL", "nosuch")
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    assert "RIVERBED_MODEL='nosuch'" in err and "unknown model" in err
    assert out == ""


def test_the_top_level_help_lists_worker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "{broker,produce,tail,worker," in out
    assert "\n    worker              run a worker" in out


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_worker_help_has_no_side_effects_and_h_is_help(
    tmp_path: os.PathLike[str], flag: str
) -> None:
    # A dead broker: help must not need one (it used to create the topics first).
    res = subprocess.run(
        [sys.executable, "-c", SIDE_EFFECTS_PROBE, "worker", "-l", "info", flag],
        env=_env(broker="127.0.0.1:1"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT_S,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    # riverbed's own help: its options and its defaults, not Faust's 0.0.0.0.
    assert "--processes N|auto" in res.stdout and "127.0.0.1:" in res.stdout
    assert "0.0.0.0:" not in res.stdout and "--faust-help" in res.stdout
    # No snapshot key file (.riverbed/snapshot.key), no topics, nothing at all.
    assert "SIDE EFFECTS: []" in res.stderr, res.stderr
    faust = subprocess.run(
        [sys.executable, "-c", SIDE_EFFECTS_PROBE, "worker", "--faust-help"],
        env=_env(broker="127.0.0.1:1"), cwd=tmp_path, capture_output=True, text=True,
        timeout=HELP_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert "--web-host TEXT" in faust.stdout
    assert "-h, --help" in faust.stdout and "-h, --web-host" not in faust.stdout


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def _refused() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens


@pytest.mark.parametrize(
    ("command", "broker"),
    [
        (["produce", "--limit", "3"], "refused"),
        (["produce"], "silent"),
        (["tail", "events"], "refused"),
    ],
)
def test_a_dead_broker_is_one_line_and_a_non_zero_exit_in_bounded_time(
    broker: str, command: list[str], silent_broker: str
) -> None:
    address = silent_broker if broker == "silent" else _refused()
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "riverbed", *command],
        env=_env(broker=address),
        capture_output=True,
        text=True,
        timeout=DEAD_BROKER_TIMEOUT_S,
        check=False,
    )
    took = time.monotonic() - t0
    assert res.returncode == 2
    assert res.stderr.splitlines() == [res.stderr.strip()], res.stderr  # one line
    assert res.stderr.startswith(
        f"riverbed: error: cannot reach Kafka at RIVERBED_BROKER={address}"
    )
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert took < 20.0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--file", "x.jsonl", "--label-delay", "3"], "--label-delay applies to datasets"),
        (["--file", "x.jsonl", "--dataset", "sea"], "not allowed with argument"),
        (["--key-field", "id"], "--key-field applies to --file only"),
        (["--topic", "labels"], "--topic applies to --file only"),
    ],
)
def test_produce_file_options_do_not_mix_with_dataset_options(
    clean_env: None, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["produce", *args])
    assert exc.value.code == 2
    assert error in capsys.readouterr().err


def test_produce_file_names_a_file_it_cannot_read(
    clean_env: None, capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    missing = os.path.join(tmp_path, "nope.jsonl")
    assert main(["produce", "--file", missing]) == 2
    assert f"cannot read --file {missing}: No such file or directory" in capsys.readouterr().err


def test_read_lines_splits_any_chunking_and_keeps_the_bytes() -> None:
    long = b'{"a": "' + b"x" * 200_000 + b'"}'  # longer than a read
    raw = b'{"id": 1}\r\n\n  \n' + long + b'\n{"\xc3\xa9": 2}'  # no final newline

    async def lines() -> list[bytes]:
        return [line async for line in read_lines(io.BytesIO(raw))]

    assert asyncio.run(lines()) == [b'{"id": 1}', b"", b"  ", long, b'{"\xc3\xa9": 2}']


def test_read_lines_of_a_pipe_does_not_hold_the_event_loop() -> None:
    r, w = os.pipe()
    os.write(w, b"first\n")  # the writer keeps the pipe open: the next read waits

    async def first_line_while_the_loop_runs() -> tuple[bytes, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        with os.fdopen(r, "rb") as pipe:
            lines = read_lines(pipe)
            line = await lines.__anext__()
            await asyncio.sleep(0.2)  # the reader thread now waits on the pipe
            ticker.cancel()
            await lines.aclose()
        return line, ticks

    try:
        line, ticks = asyncio.run(first_line_while_the_loop_runs())
    finally:
        os.close(w)
    assert line == b"first"
    assert ticks >= 5  # the loop went on while the pipe had nothing to read
