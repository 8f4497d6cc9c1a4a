"""The one exception root of riverbed and its small, condition-named subclasses."""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BrokerError",
    "BrokerUnreachable",
    "ConfigError",
    "DuplicateCandidate",
    "IncompatibleLibrary",
    "InvalidRecord",
    "ModelError",
    "RiverbedError",
    "TLSHandshakeFailed",
    "UnknownCandidate",
]


class RiverbedError(Exception):
    """Root of every error riverbed raises on purpose."""


class ConfigError(RiverbedError):
    """A setting is missing or malformed; raised at start-up, naming the variable."""


class BrokerUnreachable(ConfigError):
    """No bootstrap server of ``RIVERBED_BROKER`` answered with the configured security;
    raised at start-up (``riverbed.kafka.security.preflight``), never retried."""


class TLSHandshakeFailed(BrokerUnreachable):
    """A TLS connection to a broker failed: an untrusted or mismatched certificate, a
    client certificate refused, or a listener that does not speak TLS."""


class AuthenticationFailed(BrokerUnreachable):
    """A broker refused the SASL credentials (the message names the user, not the password)."""


class IncompatibleLibrary(RiverbedError):
    """An installed faust, mode, aiokafka or river lacks a private name riverbed relies
    on (``riverbed.privates``: the message names the library, its version and the name)."""


class BrokerError(RiverbedError):
    """The local broker cannot be fetched, started, reached or stopped."""


class InvalidRecord(RiverbedError):
    """A record on the wire breaks the contract; the message is the dead-letter reason.

    Parameters
    ----------
    reason
        Readable reason, stored in the dead-letter headers.
    stage
        Where it failed: ``deserialize`` or ``validate``.

    """

    def __init__(self, reason: str, *, stage: str = "validate") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


class ModelError(RiverbedError):
    """The model raised on one record; the record goes to the dead-letter topic.

    Parameters
    ----------
    stage
        ``predict`` or ``learn``.
    cause
        The model's exception.

    """

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"model failed to {stage}: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.cause = cause


class UnknownCandidate(RiverbedError, KeyError):
    """A model name that is not one of a partition's candidates (the message names them)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateCandidate(RiverbedError):
    """An imported model's name is a candidate's already."""
