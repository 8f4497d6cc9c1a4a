"""Secure connections: the arguments every aiokafka client of riverbed takes.

``RIVERBED_SECURITY_PROTOCOL``, ``RIVERBED_SASL_*`` and ``RIVERBED_SSL_*`` become
aiokafka's own ``security_protocol``, ``sasl_*`` and ``ssl_context`` arguments (the
context made by aiokafka's :func:`~aiokafka.helpers.create_ssl_context`), so the
worker's admin and recovery clients, ``produce``, ``tail`` and the bench connect alike.
"""

from __future__ import annotations

import functools
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riverbed.config import Settings

__all__ = ["client_args", "ssl_context"]


@functools.lru_cache(maxsize=8)
def ssl_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    """A TLS client context: the CA file (or the system's trust store), and a client
    certificate for mutual TLS. Host names are checked, as Kafka's Java clients do."""
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(
        cafile=cafile or None, certfile=certfile or None, keyfile=keyfile or None
    )


def client_args(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for ``settings``' security protocol.

    Examples
    --------
    >>> from riverbed.config import Settings
    >>> client_args(Settings.from_env({}))
    {'security_protocol': 'PLAINTEXT'}
    >>> args = client_args(Settings.from_env({
    ...     "RIVERBED_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    ...     "RIVERBED_SASL_MECHANISM": "SCRAM-SHA-256",
    ...     "RIVERBED_SASL_USERNAME": "alice", "RIVERBED_SASL_PASSWORD": "s3cret"}))
    >>> sorted(args)
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']

    """
    protocol = settings.security_protocol
    args: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        args["ssl_context"] = ssl_context(
            settings.ssl_cafile, settings.ssl_certfile, settings.ssl_keyfile
        )
    if protocol.startswith("SASL"):
        args["sasl_mechanism"] = settings.sasl_mechanism
        args["sasl_plain_username"] = settings.sasl_username
        args["sasl_plain_password"] = settings.sasl_password
    return args
