"""Secured clusters: TLS, SASL (PLAIN, SCRAM) and mutual TLS, end to end.

The suite makes its own private CA with openssl, a broker certificate for 127.0.0.1,
a client certificate, and a second CA that signed nothing the broker has. It starts
its own broker (:class:`riverbed.devtools.broker.LocalBroker` with
:class:`~riverbed.devtools.broker.SecureListeners`): SASL_SSL with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512 users, and SSL requiring a client certificate. The
session broker of the other tests is not used.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from riverbed.config import Settings
from riverbed.kafka.security import preflight
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    Worker,
    free_port,
    riverbed,
    riverbed_env,
    total,
)
from tests.integration.secured import PASSWORD, USER, Secured

WRONG_PASSWORD = "not-Al1ce-s3cret"
EVENTS = 200
# A worker that cannot connect must say so well within this (it is its session timeout).
SESSION_TIMEOUT_S = 10
CLI_TIMEOUT_S = 60.0


def _env(address: str, names: Names, output_dir: Path, **security: Any) -> dict[str, str]:
    return riverbed_env(
        address,
        names,
        partitions=2,
        web_port=free_port(),
        data_dir=output_dir / "worker",
        session_timeout=SESSION_TIMEOUT_S,
        **security,
    )


def _learns_and_tails(env: dict[str, str], output_dir: Path, secret: str | None) -> None:
    """produce -> a worker predicts and learns every event -> tail reads the predictions."""
    produce = f"produce --limit {EVENTS} --dataset phishing --seed 3".split()
    sent = riverbed(*produce, env=env, timeout=CLI_TIMEOUT_S)
    assert sent.returncode == 0, sent.stderr
    worker = Worker(env, output_dir / "worker.log")
    try:
        worker.wait_ready()
        wait_for(
            lambda: total(worker, "learned") >= EVENTS,
            timeout=RECV_TIMEOUT_S,
            what=f"the worker to learn {EVENTS} events",
        )
        status, models = worker.get("/models")
        assert status == 200
    finally:
        assert worker.stop() == 0, worker.tail_log()
    assert total_events(models) == EVENTS
    tail = f"tail predictions --limit {EVENTS} --idle-timeout 10".split()
    shown = riverbed(*tail, env=env, timeout=CLI_TIMEOUT_S)
    assert shown.returncode == 0, shown.stderr
    predictions = [orjson.loads(line.split(" ", 2)[2]) for line in shown.stdout.splitlines()]
    assert len(predictions) == EVENTS
    assert all("y_pred" in p and p["model"] == "logreg" for p in predictions)
    if secret is not None:
        outputs = [
            worker.log.read_text(errors="replace"),
            orjson.dumps(models).decode(),
            sent.stdout,
            sent.stderr,
            shown.stderr,
        ]
        assert not any(secret in text for text in outputs), "the password was printed"


def total_events(models: dict[str, Any]) -> int:
    return sum(p["events"] for p in models["partitions"].values())


def test_a_worker_over_sasl_ssl_with_scram_learns_and_tail_reads_it(
    secured: Secured, names: Names, output_dir: Path
) -> None:
    env = _env(secured.sasl_ssl, names, output_dir, **secured.sasl("SCRAM-SHA-512"))
    _learns_and_tails(env, output_dir, secret=PASSWORD)


def test_a_worker_over_mutual_tls_learns_and_tail_reads_it(
    secured: Secured, names: Names, output_dir: Path
) -> None:
    env = _env(secured.mtls, names, output_dir, **secured.mutual_tls())
    _learns_and_tails(env, output_dir, secret=None)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_sasl_mechanism_authenticates(secured: Secured, mechanism: str) -> None:
    env = {f"RIVERBED_{k.upper()}": str(v) for k, v in secured.sasl(mechanism).items()}
    settings = Settings.from_env({**env, "RIVERBED_BROKER": secured.sasl_ssl})
    asyncio.run(preflight(settings))  # raises if the broker refused


FAILURES = {
    # case: (listener, settings, what the one line of error says)
    "wrong password": (
        "sasl_ssl",
        {"sasl_password": WRONG_PASSWORD, "sasl_mechanism": "SCRAM-SHA-256"},
        f"SASL authentication as '{USER}' (SCRAM-SHA-256) with {{address}} failed: "
        "Authentication failed",
    ),
    "untrusted CA": (
        "sasl_ssl",
        {"ssl_cafile": "OTHER_CA"},
        "TLS handshake with {address} failed: certificate verify failed",
    ),
    "no client certificate": (
        "mtls",
        {"ssl_certfile": "", "ssl_keyfile": ""},
        "TLS connection to {address} failed: the broker closed it before answering: the "
        "listener may require a client certificate",
    ),
}


@pytest.mark.parametrize(
    ("case", "command"),
    [
        ("wrong password", "worker"),
        ("untrusted CA", "worker"),
        ("no client certificate", "worker"),
        ("wrong password", "tail"),
        ("untrusted CA", "produce"),
    ],
)
def test_a_refused_connection_stops_start_up_with_one_clear_line(
    secured: Secured, names: Names, output_dir: Path, case: str, command: str
) -> None:
    listener, changes, expected = FAILURES[case]
    address = secured.sasl_ssl if listener == "sasl_ssl" else secured.mtls
    base = secured.sasl(password=PASSWORD) if listener == "sasl_ssl" else secured.mutual_tls()
    settings = {**base, **changes}
    if settings.get("ssl_cafile") == "OTHER_CA":
        settings["ssl_cafile"] = secured.pki.other_ca
    env = _env(address, names, output_dir, **settings)
    args = {
        "worker": ["worker", "-l", "info"],
        "tail": ["tail", "predictions", "--limit", "1"],
        "produce": ["produce", "--limit", "1"],
    }[command]
    t0 = time.monotonic()
    res = riverbed(*args, env=env, timeout=CLI_TIMEOUT_S)
    took = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert took < SESSION_TIMEOUT_S, f"took {took:.1f} s"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, f"one line expected:\n{out}"
    assert lines[0].startswith("riverbed: error: " + expected.format(address=address)), out
    assert "Traceback" not in out
    assert PASSWORD not in out and WRONG_PASSWORD not in out
