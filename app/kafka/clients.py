"""Every aiokafka client riverbed makes is made here: consumers, producers, admin clients.

Each takes the bootstrap servers and the TLS and SASL arguments of
:func:`riverbed.kafka.security.client_args`, so the worker's recovery and warm-up, topic
set-up, ACL check, ``export``, ``produce``, ``tail``, ``demo`` and ``broker status``
connect alike, with a caller's own options (``**overrides``) on top. No module outside
``app/kafka/`` imports aiokafka or makes a client (``tests/unit/test_imports.py``).

Made elsewhere, on purpose: Faust's own consumer and producers, which Faust builds from
the credentials ``app/kafka/worker.py`` hands it
(:func:`~riverbed.kafka.security.faust_credentials`, the same arguments); and the
preflight's single raw connection (:func:`~riverbed.kafka.security.preflight`), which
must not retry the way a client does.

The aiokafka names other modules need are here too: :class:`TopicPartition`,
:class:`MessageSizeTooLargeError`, and :func:`unreachable` (whether an error means the
brokers did not answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

from riverbed.config import Settings
from riverbed.kafka.security import client_args

__all__ = [
    "Connection",
    "MessageSizeTooLargeError",
    "TopicPartition",
    "admin",
    "admin_client",
    "client",
    "consumer",
    "producer",
    "unreachable",
]


class Connection(NamedTuple):
    """How to reach Kafka: the bootstrap servers (``host:port,...``) and the security
    arguments every client takes (:func:`~riverbed.kafka.security.client_args`).

    For callers that hold those two rather than the settings (the recovery, the local
    broker's probe); the functions below take either.

    Examples
    --------
    >>> Connection.of(Settings.from_env({"RIVERBED_BROKER": "a:1,b:2"}))
    Connection(bootstrap='a:1,b:2', security={'security_protocol': 'PLAINTEXT'})

    """

    bootstrap: str
    security: Mapping[str, Any] = {}

    @classmethod
    def of(cls, settings: Settings) -> Connection:
        return cls(settings.bootstrap, client_args(settings))


def _args(kafka: Settings | Connection, overrides: Mapping[str, Any]) -> dict[str, Any]:
    conn = kafka if isinstance(kafka, Connection) else Connection.of(kafka)
    return {"bootstrap_servers": conn.bootstrap, **conn.security, **overrides}


def consumer(kafka: Settings | Connection, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer (not started), subscribed to ``topics`` if any. Like every
    client here, made in a coroutine (aiokafka takes the running loop).

    Examples
    --------
    >>> async def make():
    ...     return consumer(Connection("127.0.0.1:9"), enable_auto_commit=False)
    >>> type(asyncio.run(make())).__name__
    'AIOKafkaConsumer'

    """
    return AIOKafkaConsumer(*topics, **_args(kafka, overrides))


def producer(kafka: Settings | Connection, **overrides: Any) -> AIOKafkaProducer:
    """An aiokafka producer (not started)."""
    return AIOKafkaProducer(**_args(kafka, overrides))


def admin(kafka: Settings | Connection, **overrides: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client (not started)."""
    return AIOKafkaAdminClient(**_args(kafka, overrides))


def client(kafka: Settings | Connection, **overrides: Any) -> AIOKafkaClient:
    """aiokafka's low-level client (not bootstrapped): for requests of riverbed's own."""
    return AIOKafkaClient(**_args(kafka, overrides))


@contextlib.asynccontextmanager
async def admin_client(settings: Settings, timeout: float) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client of ``settings`` (security included), closed after; its
    start and each of its requests take at most ``timeout`` seconds."""
    started = admin(settings, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(started.start(), timeout)
    try:
        yield started
    finally:
        await started.close()


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the brokers did not answer (in time).

    Examples
    --------
    >>> unreachable(KafkaConnectionError()), unreachable(TimeoutError()), unreachable(OSError())
    (True, True, False)

    """
    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | TimeoutError)
