"""A broker of the suite's own with secured listeners, and the private CA it trusts.

The suite makes its own private CA with openssl, a broker certificate for 127.0.0.1,
a client certificate, and a second CA that signed nothing the broker has. The broker
(:class:`riverbed.devtools.broker.LocalBroker` with
:class:`~riverbed.devtools.broker.SecureListeners`) has SASL_SSL with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512 users, and SSL requiring a client certificate. The
``secured`` fixture (conftest.py) starts it once per session, for the tests that use it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from riverbed.devtools.broker import LocalBroker, SecureListeners
from tests.integration.helpers import BROKER_START_TIMEOUT_S, free_port

USER, PASSWORD = "alice", "Al1ce-s3cret.pw"


@dataclass(frozen=True)
class Pki:
    ca: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # trusted by nobody: the broker's certificate is not signed by it


EC_KEY = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"


def _openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True,
                   timeout=30)  # fmt: skip


def _ca(d: Path, name: str) -> None:
    _openssl(
        f"req -x509 {EC_KEY} -keyout {name}.key -out {name}.pem -days 2 "
        f"-subj /CN=riverbed-test-{name} -addext basicConstraints=critical,CA:TRUE "
        "-addext keyUsage=critical,keyCertSign,cRLSign",
        d,
    )


def _leaf(d: Path, name: str, subject: str, extensions: list[str]) -> None:
    """A certificate signed by ca.pem, with these X.509 extensions."""
    (d / f"{name}.ext").write_text("\n".join(extensions) + "\n")
    _openssl(f"req {EC_KEY} -keyout {name}.key -out {name}.csr -subj {subject}", d)
    _openssl(
        f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem "
        f"-days 2 -extfile {name}.ext",
        d,
    )


def make_pki(d: Path) -> Pki:
    """A private CA, a broker certificate for 127.0.0.1, a client certificate (mTLS)."""
    common = [
        "basicConstraints=critical,CA:FALSE",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
    ]
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(
        d,
        "broker",
        "/CN=127.0.0.1",
        [
            *common,
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
        ],
    )
    _leaf(
        d,
        "client",
        "/CN=riverbed-client",
        [*common, "keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"],
    )
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return Pki(
        d / "ca.pem",
        d / "broker.pem",
        d / "broker.key",
        d / "client.pem",
        d / "client.key",
        d / "other-ca.pem",
    )


@dataclass(frozen=True)
class Secured:
    pki: Pki
    sasl_ssl: str  # host:port of the SASL_SSL listener
    mtls: str  # host:port of the SSL listener that requires a client certificate
    plain: str = ""  # host:port of the PLAINTEXT listener (User:ANONYMOUS)

    def sasl(self, mechanism: str = "SCRAM-SHA-512", password: str = PASSWORD) -> dict[str, Any]:
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_username": USER,
            "sasl_password": password,
            "ssl_cafile": self.pki.ca,
        }

    def mutual_tls(self) -> dict[str, Any]:
        return {
            "security_protocol": "SSL",
            "ssl_cafile": self.pki.ca,
            "ssl_certfile": self.pki.client_cert,
            "ssl_keyfile": self.pki.client_key,
        }


def secured_broker(
    tmp_path_factory: pytest.TempPathFactory, *, authorizer: bool = False
) -> Iterator[Secured]:
    """A broker of its own with SASL_SSL and mutual-TLS listeners, signed by our CA
    (with ``authorizer``, only ACLs grant anything but on PLAINTEXT, the admin's)."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    port = free_port(pair=True)
    listeners = SecureListeners(
        sasl_ssl_port=free_port(),
        ssl_port=free_port(),
        certfile=pki.broker_cert,
        keyfile=pki.broker_key,
        cafile=pki.ca,
        users={USER: PASSWORD},
        authorizer=authorizer,
    )
    broker = LocalBroker(
        port=port, data_dir=tmp_path_factory.mktemp("secured-broker"), secure=listeners
    )
    broker.start(timeout=BROKER_START_TIMEOUT_S)
    try:
        yield Secured(
            pki,
            f"127.0.0.1:{listeners.sasl_ssl_port}",
            f"127.0.0.1:{listeners.ssl_port}",
            broker.bootstrap,
        )
    finally:
        broker.stop()
