"""Secure connections: the arguments every Kafka client of riverbed takes, and a
start-up check that they work.

``RIVERBED_SECURITY_PROTOCOL``, ``RIVERBED_SASL_*`` and ``RIVERBED_SSL_*`` become
aiokafka's own ``security_protocol``, ``sasl_*`` and ``ssl_context`` arguments (the
context made by aiokafka's :func:`~aiokafka.helpers.create_ssl_context`), which
``app/kafka/clients.py`` gives every client it makes, so the worker's admin and recovery
clients, ``produce``, ``tail`` and the bench connect alike; :func:`faust_credentials`
gives Faust the same as its own credentials object, which Faust turns back into these
arguments for its consumer and producers.

:func:`preflight` connects once, the way every client will, before anything else
starts: a wrong password or an untrusted certificate is then one clear
:class:`~riverbed.exceptions.ConfigError` at start-up, not a client that retries its
bootstrap (or a Faust worker that crashes with a traceback). The password is never
part of a message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from typing import TYPE_CHECKING, Any

from riverbed.exceptions import (
    AuthenticationFailed,
    BrokerUnreachable,
    ConfigError,
    TLSHandshakeFailed,
)

if TYPE_CHECKING:
    from faust.auth import Credentials

    from riverbed.config import Settings

__all__ = ["PREFLIGHT_TIMEOUT_S", "client_args", "faust_credentials", "preflight", "ssl_context"]

# At most this long (and never longer than RIVERBED_SESSION_TIMEOUT) for the check.
PREFLIGHT_TIMEOUT_S = 10.0
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_AUTHENTICATE = 36  # Kafka's API key of SaslAuthenticate requests and responses


class _HideSaslTokens(logging.Filter):
    """At debug level aiokafka logs every request and response it sends, the SASL ones
    too: PLAIN's holds the password in clear. This shows them as hidden."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(
            getattr(a, "API_KEY", None) == SASL_AUTHENTICATE for a in args
        ):
            record.args = tuple(
                "<SASL authentication, hidden>"
                if getattr(a, "API_KEY", None) == SASL_AUTHENTICATE
                else a
                for a in args
            )
        return True


_HIDE_SASL_TOKENS = _HideSaslTokens()


def _encrypted_key(keyfile: str) -> str:
    # Called by OpenSSL for an encrypted key, instead of its prompt on the terminal
    # (a worker would wait for it forever).
    msg = (
        f"RIVERBED_SSL_KEYFILE={keyfile}: the key is encrypted; riverbed needs an "
        "unencrypted PEM key (openssl pkey -in KEY -out PLAIN_KEY), readable only by its user"
    )
    raise ConfigError(msg)


@functools.lru_cache(maxsize=8)
def ssl_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    """A TLS client context: the CA file (or the system's trust store), and a client
    certificate for mutual TLS. Host names are checked, as Kafka's Java clients do.

    Raises
    ------
    ConfigError
        When a file is not what its setting says (naming the setting).

    """
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(cafile=cafile or None)
    except (ssl.SSLError, OSError) as exc:
        msg = f"RIVERBED_SSL_CAFILE={cafile}: not PEM CA certificates ({_reason(exc)})"
        raise ConfigError(msg) from None
    if certfile:
        try:
            context.load_cert_chain(
                certfile, keyfile or None, password=functools.partial(_encrypted_key, keyfile)
            )
        except (ssl.SSLError, OSError) as exc:
            msg = (
                f"RIVERBED_SSL_CERTFILE={certfile} with RIVERBED_SSL_KEYFILE={keyfile}: "
                f"not a PEM certificate and its key ({_reason(exc)})"
            )
            raise ConfigError(msg) from None
    return context


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
    if protocol in TLS_PROTOCOLS:
        args["ssl_context"] = ssl_context(
            settings.ssl_cafile, settings.ssl_certfile, settings.ssl_keyfile
        )
    if protocol.startswith("SASL"):
        logging.getLogger("aiokafka.conn").addFilter(_HIDE_SASL_TOKENS)  # added once
        args["sasl_mechanism"] = settings.sasl_mechanism
        args["sasl_plain_username"] = settings.sasl_username
        args["sasl_plain_password"] = settings.sasl_password
    return args


def faust_credentials(settings: Settings) -> Credentials | None:
    """Faust's ``broker_credentials`` for ``settings`` (None: PLAINTEXT).

    Faust hands them to every aiokafka consumer and producer it makes
    (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``), which then
    get exactly :func:`client_args`.

    Examples
    --------
    >>> from riverbed.config import Settings
    >>> faust_credentials(Settings.from_env({
    ...     "RIVERBED_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    ...     "RIVERBED_SASL_MECHANISM": "SCRAM-SHA-512",
    ...     "RIVERBED_SASL_USERNAME": "alice", "RIVERBED_SASL_PASSWORD": "s3cret"}))
    <SASLCredentials: username=alice>

    """
    import faust

    args = client_args(settings)
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(args["ssl_context"])
    # SASL_SSL when given a context, SASL_PLAINTEXT without one.
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        ssl_context=args.get("ssl_context"),
        mechanism=settings.sasl_mechanism,
    )


# -- the start-up check ---------------------------------------------------------------


async def preflight(settings: Settings, timeout: float | None = None) -> None:
    """Connect to the bootstrap servers as every client will; raise if that fails.

    One connection per server of ``RIVERBED_BROKER``, in order, until one answers a
    metadata request: TCP, the TLS handshake (SSL, SASL_SSL), Kafka's ApiVersions,
    SASL authentication (SASL_*), metadata. Nothing is retried (a wrong password or
    an untrusted certificate does not get better), and the whole check takes at most
    ``timeout`` seconds (default: ``RIVERBED_SESSION_TIMEOUT``, at most
    :data:`PREFLIGHT_TIMEOUT_S`).

    Raises
    ------
    AuthenticationFailed
        A broker refused the SASL credentials (the message names the user).
    TLSHandshakeFailed
        A TLS connection failed: certificate, client certificate, or not a TLS listener.
    BrokerUnreachable
        Nothing answered (refused, timed out, closed).
    ConfigError
        A TLS file is not what its setting says.

    """
    budget = min(settings.session_timeout, PREFLIGHT_TIMEOUT_S) if timeout is None else timeout
    args = client_args(settings)
    each = budget / len(settings.broker)
    failures: list[BrokerUnreachable] = []
    for address in settings.broker:
        try:
            await asyncio.wait_for(_probe(address, settings, args, each), each)
            return
        except TimeoutError:
            failures.append(BrokerUnreachable(f"{address}: no answer within {each:.3g} s"))
        except BrokerUnreachable as exc:
            failures.append(exc)
    # The credentials and the trust store are the same for every broker: a refusal of
    # either says more than another broker being down.
    for kind in (AuthenticationFailed, TLSHandshakeFailed):
        refused = [f for f in failures if isinstance(f, kind)]
        if refused:
            raise refused[0]
    detail = "; ".join(str(f) for f in failures)
    msg = f"cannot reach Kafka at RIVERBED_BROKER={settings.bootstrap} ({detail})"
    hosts = {a.rpartition(":")[0] for a in settings.broker}
    if hosts <= {"127.0.0.1", "localhost"} and all(isinstance(f, _Refused) for f in failures):
        msg += "; start one with `riverbed broker start` or `make kafka-up`"
    raise BrokerUnreachable(msg)


class _Refused(BrokerUnreachable):
    """Nothing listens there."""


async def _probe(address: str, settings: Settings, args: dict[str, Any], timeout: float) -> None:
    """One connection to ``address`` with ``args``, one metadata request; or the reason."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = address.rpartition(":")
    try:
        conn = await create_conn(
            host.strip("[]"),
            int(port),
            client_id="riverbed-preflight",
            request_timeout_ms=int(timeout * 1000),
            **args,
        )
    except (OSError, KafkaError, ValueError, asyncio.IncompleteReadError) as exc:
        raise _explain(exc, address, settings) from None
    try:
        await conn.send(MetadataRequest([]))
    except (OSError, KafkaError, asyncio.IncompleteReadError) as exc:
        raise _explain(exc, address, settings) from None
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _explain(exc: BaseException, address: str, settings: Settings) -> BrokerUnreachable:
    """The error a failed connection means, in the settings' words (never a password)."""
    from aiokafka import errors

    protocol = settings.security_protocol
    tls = protocol in TLS_PROTOCOLS
    if isinstance(exc, ssl.SSLCertVerificationError):
        trust = (
            f"RIVERBED_SSL_CAFILE={settings.ssl_cafile}"
            if settings.ssl_cafile
            else "the system's trust store; set RIVERBED_SSL_CAFILE to the CA that signed it"
        )
        msg = (
            f"TLS handshake with {address} failed: certificate verify failed: "
            f"{exc.verify_message} (the broker's certificate was checked against {trust})"
        )
        return TLSHandshakeFailed(msg)
    if isinstance(exc, ssl.SSLError):
        msg = (
            f"TLS handshake with {address} failed: {_reason(exc)} "
            f"(is it a TLS listener? RIVERBED_SECURITY_PROTOCOL={protocol})"
        )
        return TLSHandshakeFailed(msg)
    sasl = (
        errors.SaslAuthenticationFailed,
        errors.AuthenticationFailedError,
        errors.IllegalSaslStateError,
        errors.UnsupportedSaslMechanismError,
        ValueError,  # aiokafka's SCRAM: "Server sent wrong signature!"
    )
    if isinstance(exc, sasl) and protocol.startswith("SASL"):
        user, mechanism = settings.sasl_username, settings.sasl_mechanism
        # The broker's own words (aiokafka puts them first); else the error's description.
        said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
        detail = said or getattr(exc, "description", "") or type(exc).__name__
        msg = f"SASL authentication as {user!r} ({mechanism}) with {address} failed: {detail}"
        return AuthenticationFailed(msg)
    if isinstance(exc, TimeoutError):  # aiokafka's request timeout
        return BrokerUnreachable(f"{address}: no answer in time")
    if isinstance(exc, ConnectionRefusedError):
        return _Refused(f"{address}: connection refused")
    closed = isinstance(
        exc, (errors.KafkaConnectionError, ConnectionResetError, asyncio.IncompleteReadError)
    )
    if closed and not tls:
        msg = (
            f"{address} closed the connection before answering; if it is a TLS listener, "
            f"set RIVERBED_SECURITY_PROTOCOL to SSL or SASL_SSL (now {protocol})"
        )
        return BrokerUnreachable(msg)
    if closed:
        maybe = (
            "the broker may not trust the client certificate "
            f"(RIVERBED_SSL_CERTFILE={settings.ssl_certfile})"
            if settings.ssl_certfile
            else "the listener may require a client certificate (mutual TLS: set "
            "RIVERBED_SSL_CERTFILE and RIVERBED_SSL_KEYFILE)"
        )
        msg = (
            f"TLS connection to {address} failed: the broker closed it before answering: "
            f"{maybe}, or the listener does not speak RIVERBED_SECURITY_PROTOCOL={protocol}"
        )
        return TLSHandshakeFailed(msg)
    if isinstance(exc, OSError):
        return BrokerUnreachable(f"{address}: {_reason(exc)}")
    return BrokerUnreachable(f"{address}: {type(exc).__name__}: {exc}")
