"""Wire records: decode and validate events and labels, encode predictions.

One JSON object (UTF-8) per Kafka message. Decoding is strict: anything that breaks
the contract raises :class:`~riverbed.exceptions.InvalidRecord` with a readable reason and
the stage (``deserialize`` or ``validate``) that the dead-letter headers carry.
orjson is used because it is several times faster than :mod:`json` and already refuses
``NaN``/``Infinity`` literals, numbers that overflow to infinity, and invalid UTF-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from riverbed.exceptions import InvalidRecord

__all__ = ["Event", "Label", "decode_event", "decode_label", "encode"]

MAX_ID_CHARS = 256

# A label or feature value: what JSON can carry and River can use.
Value = str | int | float | bool

_FEATURE_TYPES = frozenset((str, int, float, bool))
_TS_TYPES = frozenset((int, float))
_ENCODE_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class Event:
    """``{"id": str, "x": {name: number/str/bool}, "y": label?, "ts": epoch-ms?}``."""

    id: str
    x: dict[str, Value]
    y: Value | None = None
    ts: float | None = None


@dataclass(slots=True)
class Label:
    """``{"id": str, "y": label}``: the label of an earlier event with the same key."""

    id: str
    y: Value


def _load(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if raw is None:
        msg = "empty value (a tombstone); expected a JSON object"
        raise InvalidRecord(msg, stage="deserialize")
    if len(raw) > max_bytes:
        msg = f"value is {len(raw)} bytes, above RIVERBED_MAX_RECORD_BYTES={max_bytes}"
        raise InvalidRecord(msg, stage="deserialize")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc}"
        raise InvalidRecord(msg, stage="deserialize") from None
    if not isinstance(obj, dict):
        msg = f"value must be a JSON object, got {type(obj).__name__}"
        raise InvalidRecord(msg)
    return obj


def _id(obj: dict[str, Any]) -> str:
    rid = obj.get("id")
    if not isinstance(rid, str) or not rid:
        got = "missing" if rid is None else f"{type(rid).__name__} {rid!r}"
        msg = f'"id" must be a non-empty string, got {got}'
        raise InvalidRecord(msg)
    if len(rid) > MAX_ID_CHARS:
        msg = f'"id" is {len(rid)} characters, above {MAX_ID_CHARS}'
        raise InvalidRecord(msg)
    return rid


def _label(y: Any, where: str) -> Value:
    # bool is an int subclass; both are fine. NaN/inf never get here (orjson refuses them).
    if isinstance(y, str | int | float):
        return y
    msg = f'"{where}" must be a string, number or boolean, got {type(y).__name__}'
    raise InvalidRecord(msg)


def decode_event(raw: bytes | None, max_bytes: int) -> Event:
    """Decode and validate an ``events`` value.

    Examples
    --------
    >>> decode_event(b'{"id": "a", "x": {"f": 1.5, "c": "red"}, "y": true}', 1000)
    Event(id='a', x={'f': 1.5, 'c': 'red'}, y=True, ts=None)
    >>> decode_event(b'{"id": "a", "x": {"f": [1]}}', 1000)
    Traceback (most recent call last):
    ...
    riverbed.exceptions.InvalidRecord: "x.f" must be a number, string or boolean, got list

    """
    obj = _load(raw, max_bytes)
    rid = obj.get("id")
    if type(rid) is not str or not rid or len(rid) > MAX_ID_CHARS:
        rid = _id(obj)  # raises, naming what is wrong
    x = obj.get("x")
    if not isinstance(x, dict) or not x:
        got = "missing" if x is None else type(x).__name__
        msg = f'"x" must be a non-empty object of features, got {got}'
        raise InvalidRecord(msg)
    # One C-level pass over the types (a fifth of an isinstance loop, which is only
    # walked to name the offender or to accept a subclass).
    if not _FEATURE_TYPES.issuperset(map(type, x.values())):
        for name, v in x.items():
            if not isinstance(v, str | int | float):
                msg = f'"x.{name}" must be a number, string or boolean, got {type(v).__name__}'
                raise InvalidRecord(msg)
    y = obj.get("y")
    if y is not None and type(y) not in _FEATURE_TYPES:
        y = _label(y, "y")
    ts = obj.get("ts")
    if ts is not None and (type(ts) not in _TS_TYPES or ts < 0):  # a bool is not a time
        msg = f'"ts" must be epoch milliseconds (a number >= 0), got {ts!r}'
        raise InvalidRecord(msg)
    return Event(rid, x, y, ts)


def decode_label(raw: bytes | None, max_bytes: int) -> Label:
    """Decode and validate a ``labels`` value.

    Examples
    --------
    >>> decode_label(b'{"id": "a", "y": "spam"}', 1000)
    Label(id='a', y='spam')
    >>> decode_label(b'{"id": "a"}', 1000)
    Traceback (most recent call last):
    ...
    riverbed.exceptions.InvalidRecord: "y" is missing; a label record needs one

    """
    obj = _load(raw, max_bytes)
    rid = _id(obj)
    if obj.get("y") is None:
        msg = '"y" is missing; a label record needs one'
        raise InvalidRecord(msg)
    return Label(rid, _label(obj["y"], "y"))


def encode(obj: dict[str, Any]) -> bytes:
    """JSON bytes; label keys of ``proba`` (``True``, ``3``) become strings.

    Examples
    --------
    >>> encode({"id": "a", "y_pred": True, "proba": {False: 0.25, True: 0.75}})
    b'{"id":"a","y_pred":true,"proba":{"false":0.25,"true":0.75}}'

    """
    return orjson.dumps(obj, option=_ENCODE_OPTS)
