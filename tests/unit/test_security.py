"""``riverbed.kafka.security``: Faust's credentials match aiokafka's arguments, TLS
files are checked, and a failed connection becomes one clear error (no broker here;
tests/integration/test_security.py runs a secured one)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import errors
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from riverbed import cli
from riverbed.config import Settings
from riverbed.devtools.broker import SecureListeners
from riverbed.exceptions import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnreachable,
    ConfigError,
    TLSHandshakeFailed,
)
from riverbed.kafka import security

SECRET = "hunter2-not-shown"
SASL = {"RIVERBED_SASL_USERNAME": "alice", "RIVERBED_SASL_PASSWORD": SECRET}


def _settings(**env: str) -> Settings:
    return Settings.from_env({f"RIVERBED_{k.upper()}": v for k, v in env.items()})


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"RIVERBED_SECURITY_PROTOCOL": "SSL"},
        {"RIVERBED_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL},
        {
            "RIVERBED_SECURITY_PROTOCOL": "SASL_SSL",
            "RIVERBED_SASL_MECHANISM": "SCRAM-SHA-256",
            **SASL,
        },
        {
            "RIVERBED_SECURITY_PROTOCOL": "SASL_SSL",
            "RIVERBED_SASL_MECHANISM": "SCRAM-SHA-512",
            **SASL,
        },
    ],
    ids=["plaintext", "ssl", "sasl-plain", "sasl-ssl-scram-256", "sasl-ssl-scram-512"],
)
def test_faust_gets_the_same_connection_as_every_other_client(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    faust_args = credentials_to_aiokafka_auth(security.faust_credentials(settings))
    given = {k: v for k, v in faust_args.items() if v is not None}  # ssl_context=None
    assert given == security.client_args(settings)
    if "ssl_context" in given:
        assert given["ssl_context"].check_hostname  # as Kafka's Java clients
    assert SECRET not in repr(security.faust_credentials(settings)) + repr(settings)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def test_tls_files_that_are_not_what_their_setting_says_name_it(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"RIVERBED_SSL_CAFILE=.*ca\.txt: not PEM CA"):
        security.client_args(_settings(security_protocol="SSL", ssl_cafile=str(not_pem)))
    # An encrypted key: an error, not OpenSSL's pass phrase prompt (a worker would hang).
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-passout", "pass:pw", "-keyout", "enc.key", "-out", "enc.pem", "-days", "1",
             "-subj", "/CN=x", cwd=tmp_path)  # fmt: skip
    settings = _settings(security_protocol="SSL", ssl_certfile=str(tmp_path / "enc.pem"),
                         ssl_keyfile=str(tmp_path / "enc.key"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"RIVERBED_SSL_KEYFILE=.*the key is encrypted"):
        security.client_args(settings)


def test_riverbed_config_shows_that_the_password_is_set_not_what_it_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIVERBED_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RIVERBED_SASL_MECHANISM", "SCRAM-SHA-512")
    for k, v in SASL.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["config"]) == 0
    out = capsys.readouterr()
    assert "RIVERBED_SASL_PASSWORD=<set>\n" in out.out
    assert "RIVERBED_SASL_USERNAME=alice\n" in out.out
    assert SECRET not in out.out + out.err


# -- preflight: what a failed connection says -------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _against(handler: Callable[[Any, Any], Any], settings: dict[str, str], timeout: float) -> Any:
    """preflight() against a local TCP server that runs ``handler`` per connection."""

    async def run() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await security.preflight(_settings(broker=f"127.0.0.1:{port}", **settings), timeout)

    return asyncio.run(run())


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(1 << 16):  # reads requests, never answers, until the client goes
        pass
    writer.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def test_nothing_listening_is_unreachable_with_the_local_broker_hint() -> None:
    port = _free_port()
    with pytest.raises(BrokerUnreachable) as info:
        asyncio.run(security.preflight(_settings(broker=f"127.0.0.1:{port}")))
    assert str(info.value) == (
        f"cannot reach Kafka at RIVERBED_BROKER=127.0.0.1:{port} (127.0.0.1:{port}: connection "
        "refused); start one with `riverbed broker start` or `make kafka-up`"
    )


def test_a_server_that_never_answers_is_given_up_on_in_time() -> None:
    with pytest.raises(BrokerUnreachable, match="no answer"):
        _against(_silent, {}, timeout=0.5)


def test_a_listener_that_hangs_up_on_plaintext_suggests_tls() -> None:
    with pytest.raises(BrokerUnreachable, match="if it is a TLS listener, set RIVERBED_SECURITY"):
        _against(_hang_up, {}, timeout=5)


def test_tls_to_a_listener_that_hangs_up_is_a_tls_failure() -> None:
    with pytest.raises(TLSHandshakeFailed, match="may require a client certificate"):
        _against(_hang_up, {"security_protocol": "SSL"}, timeout=5)


def test_tls_to_a_plaintext_server_is_a_tls_failure() -> None:
    async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4)
        await writer.drain()
        writer.close()

    with pytest.raises(TLSHandshakeFailed, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed"):
        _against(not_tls, {"security_protocol": "SSL"}, timeout=5)


def test_a_refused_password_names_the_user_and_mechanism_never_the_password() -> None:
    settings = _settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                         sasl_username="alice", sasl_password=SECRET)  # fmt: skip
    said = "Authentication failed during authentication due to invalid credentials"
    exc = security._explain(errors.SaslAuthenticationFailed(said), "b:9093", settings)
    assert isinstance(exc, AuthenticationFailed)
    assert str(exc) == f"SASL authentication as 'alice' (SCRAM-SHA-256) with b:9093 failed: {said}"
    assert SECRET not in str(exc)


def test_an_untrusted_certificate_names_the_trust_store(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    bad = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad.verify_message = "unable to get local issuer certificate"
    exc = security._explain(bad, "b:9093", _settings(security_protocol="SSL", ssl_cafile=str(ca)))
    assert isinstance(exc, TLSHandshakeFailed)
    assert str(exc) == (
        "TLS handshake with b:9093 failed: certificate verify failed: unable to get local "
        f"issuer certificate (the broker's certificate was checked against "
        f"RIVERBED_SSL_CAFILE={ca})"
    )


def test_secure_listeners_refuse_users_the_broker_config_cannot_quote() -> None:
    with pytest.raises(BrokerError, match="'bob'"):
        SecureListeners(1, 2, Path("c"), Path("k"), Path("ca"), users={"bob": 'a"b'})
    listeners = SecureListeners(1, 2, Path("c"), Path("k"), Path("ca"), users={"bob": "pw"})
    assert listeners.scram_args() == [
        "--add-scram", "SCRAM-SHA-256=[name=bob,password=pw]",
        "--add-scram", "SCRAM-SHA-512=[name=bob,password=pw]",
    ]  # fmt: skip


def test_aiokafka_debug_logs_of_sasl_requests_hide_the_password(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiokafka.protocol.admin import SaslAuthenticateRequest_v0

    security.client_args(_settings(security_protocol="SASL_PLAINTEXT", **{
        k.removeprefix("RIVERBED_").lower(): v for k, v in SASL.items()}))  # fmt: skip
    plain = SaslAuthenticateRequest_v0(b"\0alice\0" + SECRET.encode())
    conn = logging.getLogger("aiokafka.conn")
    # A handler of its own on the logger, enabled: whatever another test in this process
    # did to logging (Faust's dictConfig disables existing loggers) does not hide it.
    monkeypatch.setattr(conn, "disabled", False)
    with caplog.at_level(logging.DEBUG, logger="aiokafka.conn"):
        conn.addHandler(caplog.handler)
        try:
            # What aiokafka.conn logs for each request it sends.
            conn.debug("Request to %s:%d %d: %s", "b", 9092, 7, plain)
        finally:
            conn.removeHandler(caplog.handler)
    assert "Request to b:9092 7: <SASL authentication, hidden>" in caplog.text
    assert SECRET not in caplog.text
