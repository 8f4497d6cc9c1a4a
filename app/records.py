"""Wire records: decode and validate events and labels, encode predictions.

One JSON object (UTF-8) per Kafka message. Decoding is strict: anything that breaks
the contract raises :class:`~riverbed.exceptions.InvalidRecord` with a readable reason and
the stage (``deserialize`` or ``validate``) that the dead-letter headers carry.
orjson is used because it is several times faster than :mod:`json` and already refuses
``NaN``/``Infinity`` literals, numbers that overflow to infinity, and invalid UTF-8.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from riverbed.exceptions import ConfigError, InvalidRecord

if TYPE_CHECKING:
    from riverbed.config import Settings

__all__ = ["HUGE", "Event", "FieldMapping", "Label", "decode_event", "decode_label", "encode"]

MAX_ID_CHARS = 256
MAX_DEPTH = 32  # RIVERBED_MAX_DEPTH's default: levels of objects a record may nest

# A label or feature value: what JSON can carry and River can use.
Value = str | int | float | bool

_FEATURE_TYPES = frozenset((str, int, float, bool))
_TS_TYPES = frozenset((int, float))
_ENCODE_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_loads = orjson.loads


# A float feature beyond it makes its learn checked (a walk of the model's state
# afterwards, riverbed.learning.guard). Squares of it, and tenth powers, are still
# finite; real features are far below.
HUGE = 1e30


@dataclass(slots=True)
class Event:
    """``{"id": str, "x": {name: number/str/bool}, "y": label?, "ts": epoch-ms?}``."""

    id: str
    x: dict[str, Value]
    y: Value | None = None
    ts: float | None = None
    # Event fields copied into the prediction (RIVERBED_PREDICTION_FIELDS); None: none.
    fields: dict[str, Any] | None = None
    # Whether a value of ``x`` is a float beyond HUGE, found while decoding (the guard's
    # magnitude check, folded into the decoder's pass over the values); None: not known.
    huge: bool | None = dataclasses.field(default=None, repr=False, compare=False)


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


def decode_event(raw: bytes | None, max_bytes: int, max_depth: int = MAX_DEPTH) -> Event:
    """Decode and validate an ``events`` value.

    Examples
    --------
    >>> decode_event(b'{"id": "a", "x": {"f": 1.5, "c": "red"}, "y": true}', 1000)
    Event(id='a', x={'f': 1.5, 'c': 'red'}, y=True, ts=None, fields=None)
    >>> decode_event(b'{"id": "a", "x": {"f": null, "u": {"age": 3}}}', 1000).x
    {'u.age': 3}
    >>> decode_event(b'{"id": "a", "x": {"f": [1]}}', 1000)
    Traceback (most recent call last):
    ...
    riverbed.exceptions.InvalidRecord: "x.f" must be a number, string, boolean or object, got list

    """
    return _event(raw, None, max_bytes, max_depth)


def _event(
    raw: bytes | None, _key: bytes | None, max_bytes: int, max_depth: int = MAX_DEPTH
) -> Event:
    """:func:`decode_event` as the processor calls a decoder (the key is not read): the
    default mapping's decoder itself, with no call in between."""
    try:
        obj = _loads(raw) if raw is not None and len(raw) <= max_bytes else None
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is not dict:
        obj = _load(raw, max_bytes)  # raises, naming what is wrong
    rid = obj.get("id")
    if type(rid) is not str or not rid or len(rid) > MAX_ID_CHARS:
        rid = _id(obj)  # raises, naming what is wrong
    x = obj.get("x")
    if not isinstance(x, dict) or not x:
        got = "missing" if x is None else type(x).__name__
        msg = f'"x" must be a non-empty object of features, got {got}'
        raise InvalidRecord(msg)
    # One pass over the values: their types (exact: a subclass, a nested object or a
    # null takes the slow path below) and the guard's magnitude check of the floats.
    huge: bool | None = False
    for v in x.values():
        t = type(v)
        if t is float:
            if not -HUGE < v < HUGE:
                huge = True
        elif t is not int and t is not str and t is not bool:
            huge = None
            break
    if huge is None:
        # Nested objects flatten to dotted names and nulls are left out (sparse x).
        flat: dict[str, Value] = {}
        _flatten(x, "", flat, lists="error", skip=frozenset(), shown="x.", level=2,
                 max_depth=max_depth)  # fmt: skip
        if not flat:
            msg = '"x" has no features that are not null'
            raise InvalidRecord(msg)
        x = flat
    y = obj.get("y")
    if y is not None and type(y) not in _FEATURE_TYPES:
        y = _label(y, "y")
    ts = obj.get("ts")
    if ts is not None and (type(ts) not in _TS_TYPES or ts < 0):  # a bool is not a time
        ts = _time_ms(ts, "ts")  # an ISO-8601 string, or an error
    return Event(rid, x, y, ts, None, huge)


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


def encode(obj: Any) -> bytes:
    """JSON bytes; label keys of ``proba`` (``True``, ``3``) become strings.

    Examples
    --------
    >>> encode({"id": "a", "y_pred": True, "proba": {False: 0.25, True: 0.75}})
    b'{"id":"a","y_pred":true,"proba":{"false":0.25,"true":0.75}}'

    """
    return orjson.dumps(obj, option=_ENCODE_OPTS)


# -- field mapping: the user's own JSON layout ------------------------------------------
# RIVERBED_EVENT_* and RIVERBED_LABEL_* name where an id, the features, the label and
# the time sit in the user's records. The default mapping is the envelope above and
# keeps its fast decoder; any other mapping is compiled once into the lookups below.

_MISSING: Any = object()
KEY = "@key"
# Names a prediction record has already: RIVERBED_PREDICTION_FIELDS may not shadow them.
PREDICTION_NAMES = frozenset(("id", "y_pred", "proba", "y", "model", "partition", "offset", "ts"))


def _at(obj: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at a dotted path (``_MISSING`` when absent); a key that itself holds
    dots (``{"user.age": 3}``) is found too."""
    cur: Any = obj
    for part in parts:
        if not isinstance(cur, dict):
            break
        cur = cur.get(part, _MISSING)
        if cur is _MISSING:
            break
    else:
        return cur
    return obj.get(".".join(parts), _MISSING) if len(parts) > 1 else _MISSING


# Dotted names made before, by prefix. Bounded in entries per prefix and in bytes over
# all prefixes: a stream of ever new keys, or of ever new nested prefixes (3 x 150k
# events shaped {"x": {"k<random>": {"v": 1}}} took a worker from 166 to 382 MB),
# only rebuilds them.
_NAMES: dict[str, dict[str, str]] = {}
_NAMES_MAX = 100_000
NAMES_MAX_BYTES = 16 * 1024 * 1024
_ENTRY_BYTES = 160  # beyond the characters: a dict slot and a str object, measured ~150


class _NameCache:
    """What ``_NAMES`` holds (an estimate in bytes), its bound, and how often it was
    dropped."""

    bytes = 0
    resets = 0
    max_bytes = NAMES_MAX_BYTES


def bound_name_cache(max_bytes: int) -> None:
    """Bound the dotted-name cache to ``max_bytes`` (``RIVERBED_NAME_CACHE_MAX_BYTES``)."""
    _NameCache.max_bytes = max_bytes


def name_cache() -> dict[str, int]:
    """``{"bytes", "resets"}`` of the dotted-name cache (``riverbed_name_cache_*``)."""
    return {"bytes": _NameCache.bytes, "resets": _NameCache.resets}


def _names_of(prefix: str) -> dict[str, str]:
    """The names cached under ``prefix``, a fresh dict when new (or the cache full)."""
    names = _NAMES.get(prefix)
    if names is None or len(names) > _NAMES_MAX or _NameCache.bytes > _NameCache.max_bytes:
        if _NameCache.bytes > _NameCache.max_bytes:
            _NAMES.clear()
            _NameCache.bytes = 0
            _NameCache.resets += 1
        elif names is not None:
            _NameCache.bytes -= sum(len(k) + len(v) + _ENTRY_BYTES for k, v in names.items())
        names = _NAMES[prefix] = {}
        _NameCache.bytes += len(prefix) + _ENTRY_BYTES
    return names


def _flatten(
    obj: dict[str, Any],
    prefix: str,
    out: dict[str, Value],
    *,
    lists: str,
    skip: frozenset[str],
    shown: str = "",
    level: int,
    max_depth: int = MAX_DEPTH,
) -> None:
    """Scalars of ``obj`` under dotted names; nulls left out. ``lists``: ``"error"``
    (a list named by the mapping is a bad record) or ``"skip"`` (matched by a glob).
    ``obj`` is at nesting ``level`` of the record (the record itself is 1); an object
    deeper than ``max_depth`` makes a bad record, never a recursion past Python's limit
    (orjson reads 1,024 levels; a 6 KB record of 1,000 stopped a worker)."""
    if level > max_depth:
        where = f"{shown}{prefix[:-1]}" if prefix else shown.rstrip(".") or "the record"
        msg = f'"{where[:200]}" is nested deeper than {max_depth} levels (RIVERBED_MAX_DEPTH)'
        raise InvalidRecord(msg)
    names = _names_of(prefix)
    for name, v in obj.items():
        # The same str object for a name every time: its hash is computed once, not
        # in every dict of the model, and orjson hands the same key objects back.
        path = names.get(name)
        if path is None:
            path = names[name] = f"{prefix}{name}" if prefix else name
            _NameCache.bytes += len(name) + len(path) + _ENTRY_BYTES
        if path in skip:
            continue
        t = type(v)
        if t is str or t is float or t is int or t is bool:
            out[path] = v
        elif v is None:
            continue
        elif t is dict:
            _flatten(v, path + ".", out, lists=lists, skip=skip, shown=shown, level=level + 1,
                     max_depth=max_depth)  # fmt: skip
        elif lists == "error":
            msg = f'"{shown}{path}" must be a number, string, boolean or object, got {t.__name__}'
            raise InvalidRecord(msg)


def _check_depth(v: Any, path: str, level: int, max_depth: int) -> None:
    """Raise for a JSON value (objects and lists) nested below ``max_depth`` levels,
    ``v`` being at ``level``; without recursion."""
    stack = [(v, level)]
    while stack:
        item, at = stack.pop()
        if at > max_depth:
            msg = f'"{path[:200]}" is nested deeper than {max_depth} levels (RIVERBED_MAX_DEPTH)'
            raise InvalidRecord(msg)
        children = item.values() if type(item) is dict else item
        stack.extend((c, at + 1) for c in children if type(c) is dict or type(c) is list)


def _time_ms(v: Any, path: str) -> float | None:
    """Epoch milliseconds from a number or an ISO-8601 string with a zone."""
    if v is None:
        return None
    t = type(v)
    if (t is int or t is float) and v >= 0:
        return float(v) if t is float else v
    if t is str:
        try:
            when = datetime.fromisoformat(v)
        except ValueError:
            msg = f'"{path}" is not an ISO-8601 time: {v[:60]!r}'
            raise InvalidRecord(msg) from None
        if when.tzinfo is None:
            msg = f'"{path}" has no time zone ({v[:60]!r}); add Z or +hh:mm'
            raise InvalidRecord(msg)
        return when.timestamp() * 1000
    msg = f'"{path}" must be epoch milliseconds or an ISO-8601 string, got {v!r}'
    raise InvalidRecord(msg)


def _record_id(v: Any, path: str) -> str:
    t = type(v)
    if t is str:
        rid = v
    elif t is int or t is float:
        rid = str(v)  # numbers become strings: 12 -> "12"
    else:
        got = "missing" if v is _MISSING or v is None else f"{t.__name__} {v!r}"[:80]
        msg = f'"{path}" (the id) must be a non-empty string or a number, got {got}'
        raise InvalidRecord(msg)
    if not rid or len(rid) > MAX_ID_CHARS:
        msg = f'"{path}" (the id) must have 1 to {MAX_ID_CHARS} characters, got {len(rid)}'
        raise InvalidRecord(msg)
    return rid


def _key_id(key: bytes | None) -> str:
    if not key:
        msg = "the record has no key, and RIVERBED_EVENT_ID/RIVERBED_LABEL_ID is @key"
        raise InvalidRecord(msg)
    try:
        rid = key.decode("utf-8")
    except UnicodeDecodeError:
        msg = "the record key (the id, @key) is not UTF-8"
        raise InvalidRecord(msg) from None
    return _record_id(rid, "@key")


def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


@dataclass(frozen=True)
class FieldMapping:
    """Where the id, features, label and time sit in the user's JSON records.

    Paths are dotted (``user.age``); ``@key`` as an id means the record key. Features
    are one object's path (its fields are the features, named relative to it: the
    default ``x``), or paths and globs whose features are named by their full dotted
    path (``amount``, ``user.*`` -> ``user.age``), or ``*`` (every field but the id,
    label and time). Nested objects are flattened with ``.``; nulls are left out, as
    River models take sparse dicts.

    Examples
    --------
    >>> m = FieldMapping(event_id="txn_id", features=("amount", "country", "user.*"),
    ...                  label="is_fraud", time="event_time", prediction_fields=("txn_id",))
    >>> raw = (b'{"txn_id": 7, "amount": 12.5, "country": "FR", "user": {"age": 31, '
    ...        b'"vip": null}, "event_time": "2026-11-30T10:00:00Z", "is_fraud": false}')
    >>> e = m.event(raw, None, 10_000)
    >>> e.id, e.x, e.y, e.ts, e.fields
    ('7', {'amount': 12.5, 'country': 'FR', 'user.age': 31}, False, 1796032800000.0, {'txn_id': 7})
    >>> FieldMapping(features=("*",), event_id="@key").event(b'{"a": {"b": 1}, "y": 0}', b"k", 100)
    Event(id='k', x={'a.b': 1}, y=0, ts=None, fields=None)

    """

    event_id: str = "id"
    features: tuple[str, ...] = ("x",)
    label: str = "y"
    time: str = "ts"
    label_id: str = "id"
    label_value: str = "y"
    prediction_fields: tuple[str, ...] = ()
    max_depth: int = MAX_DEPTH  # RIVERBED_MAX_DEPTH

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldMapping:
        """The mapping of ``RIVERBED_EVENT_*``/``RIVERBED_LABEL_*``, checked.

        Raises
        ------
        ConfigError
            Naming the variable, for a mapping that would leak the label into the
            features or shadow a prediction field.

        """
        m = cls(
            event_id=settings.event_id,
            features=settings.event_features,
            label=settings.event_label,
            time=settings.event_time,
            label_id=settings.label_id,
            label_value=settings.label_value,
            prediction_fields=settings.prediction_fields,
            max_depth=settings.max_depth,
        )
        m.check()
        return m

    def check(self) -> None:
        """Refuse mappings that cannot be right (see :meth:`from_settings`)."""
        for f in self.features:
            if f == "*" or any(c in f for c in "*?["):
                continue
            if self.label == f or self.label.startswith(f + "."):
                msg = (
                    f"RIVERBED_EVENT_FEATURES={','.join(self.features)} includes the label "
                    f"RIVERBED_EVENT_LABEL={self.label}: the model would see the answer"
                )
                raise ConfigError(msg)
        shadowed = sorted(PREDICTION_NAMES.intersection(self.prediction_fields))
        if shadowed:
            msg = (
                f"RIVERBED_PREDICTION_FIELDS names {', '.join(shadowed)}, a field every "
                f"prediction has already ({', '.join(sorted(PREDICTION_NAMES))})"
            )
            raise ConfigError(msg)
        if "*" in self.features and len(self.features) > 1:
            msg = "RIVERBED_EVENT_FEATURES: * already means every field; give it alone"
            raise ConfigError(msg)

    @property
    def is_default(self) -> bool:
        return dataclasses.replace(self, max_depth=MAX_DEPTH) == _DEFAULT

    def event_decoder(self) -> Callable[[bytes | None, bytes | None, int], Event]:
        """``decode(value, key, max_bytes) -> Event`` for this mapping."""
        if self.is_default:
            depth = self.max_depth
            if depth == MAX_DEPTH:
                return _event
            return lambda value, key, max_bytes: _event(value, key, max_bytes, depth)
        return self.event

    def label_decoder(self) -> Callable[[bytes | None, bytes | None, int], Label]:
        """``decode(value, key, max_bytes) -> Label`` for this mapping."""
        if self.label_id == "id" and self.label_value == "y":
            return lambda value, _key, max_bytes: decode_label(value, max_bytes)
        return self.label_record

    # The compiled lookups, made once per mapping (a frozen dataclass caches nothing
    # itself: the dict below is keyed by the mapping).
    def _compiled(self) -> _Compiled:
        c = _COMPILED.get(self)
        if c is None:
            c = _COMPILED[self] = _Compiled(self)
        return c

    def event(self, raw: bytes | None, key: bytes | None, max_bytes: int) -> Event:
        """Decode and map an events value (and key, for ``@key``)."""
        return self.event_from(_load(raw, max_bytes), key)

    def event_from(
        self, obj: dict[str, Any], key: bytes | None, *, require_id: bool = True
    ) -> Event:
        """Map a decoded events value; without ``require_id`` a missing id is ``""``
        (a record sent to ``POST /predict``)."""
        c = self._compiled()
        if not require_id and (key is None if c.id is None else _at(obj, c.id) is _MISSING):
            rid = ""
        elif c.id is None:
            rid = _key_id(key)
        else:
            rid = _record_id(_at(obj, c.id), self.event_id)
        x = c.features(obj)
        if not x:
            msg = f"no features: nothing found at RIVERBED_EVENT_FEATURES={','.join(self.features)}"
            raise InvalidRecord(msg)
        y = _at(obj, c.label)
        if y is _MISSING or y is None:
            y = None
        elif type(y) not in _FEATURE_TYPES:
            y = _label(y, self.label)
        ts = _at(obj, c.time)
        ts = None if ts is _MISSING else _time_ms(ts, self.time)
        fields = None
        if c.fields:
            fields = {}
            for name, parts in c.fields:
                v = _at(obj, parts)
                if v is not _MISSING:
                    if type(v) is dict or type(v) is list:  # copied whole: bounded too
                        _check_depth(v, name, 1 + len(parts), self.max_depth)
                    fields[name] = v
        return Event(rid, x, y, ts, fields)

    def label_record(self, raw: bytes | None, key: bytes | None, max_bytes: int) -> Label:
        """Decode and map a labels value (and key, for ``@key``)."""
        obj = _load(raw, max_bytes)
        c = self._compiled()
        rid = (
            _key_id(key) if c.label_id is None else _record_id(_at(obj, c.label_id), self.label_id)
        )
        y = _at(obj, c.label_value)
        if y is _MISSING or y is None:
            msg = f'"{self.label_value}" is missing; a label record needs one'
            raise InvalidRecord(msg)
        return Label(rid, _label(y, self.label_value))


_DEFAULT = FieldMapping()


class _Compiled:
    """A mapping's paths split once, and its feature extractor."""

    def __init__(self, m: FieldMapping) -> None:
        self.id = None if m.event_id == KEY else _split(m.event_id)
        self.label_id = None if m.label_id == KEY else _split(m.label_id)
        self.label = _split(m.label)
        self.time = _split(m.time)
        self.label_value = _split(m.label_value)
        self.fields = [(f, _split(f)) for f in m.prediction_fields]
        globs = [f for f in m.features if any(ch in f for ch in "*?[")]
        exact = [f for f in m.features if f not in globs]
        # Fields a glob never takes: the id, label and time are not features.
        self.skip = frozenset(p for p in (m.event_id, m.label, m.time) if p != KEY)
        self.single = _split(exact[0]) if len(m.features) == 1 and exact else None
        self.single_name = exact[0] if exact else ""
        self.exact = [(f, _split(f)) for f in exact]
        self.glob: re.Pattern[str] | None = (
            re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None
        )
        self.everything = globs == ["*"]  # RIVERBED_EVENT_FEATURES=*: no matching at all
        self.max_depth = m.max_depth
        self.matched: dict[str, bool] = {}

    def features(self, obj: dict[str, Any]) -> dict[str, Value]:
        x: dict[str, Value] = {}
        if self.single is not None:
            v = _at(obj, self.single)
            if type(v) is dict:  # one object: its fields, named relative to it
                _flatten(v, "", x, lists="error", skip=frozenset(), shown=self.single_name + ".",
                         level=1 + len(self.single), max_depth=self.max_depth)  # fmt: skip
                return x
            self._scalar(self.single_name, v, x, 1 + len(self.single), self.max_depth)
            return x
        for name, parts in self.exact:
            self._scalar(name, _at(obj, parts), x, 1 + len(parts), self.max_depth)
        if self.glob is not None:
            every: dict[str, Value] = {}
            _flatten(obj, "", every, lists="skip", skip=self.skip, level=1,
                     max_depth=self.max_depth)  # fmt: skip
            if self.everything and not x:
                return every
            matched = self.matched
            for name, v in every.items():
                ok = matched.get(name)
                if ok is None:  # a regex once per name, not once per record
                    if len(matched) > _NAMES_MAX:
                        matched.clear()
                    ok = matched[name] = bool(self.glob.fullmatch(name))
                if ok and name not in x:
                    x[name] = v
        return x

    @staticmethod
    def _scalar(name: str, v: Any, x: dict[str, Value], level: int, max_depth: int) -> None:
        if v is _MISSING or v is None:
            return
        t = type(v)
        if t is str or t is float or t is int or t is bool:
            x[name] = v
        elif t is dict:
            _flatten(v, name + ".", x, lists="error", skip=frozenset(), level=level,
                     max_depth=max_depth)  # fmt: skip
        else:
            msg = f'"{name}" must be a number, string, boolean or object, got {t.__name__}'
            raise InvalidRecord(msg)


_COMPILED: dict[FieldMapping, _Compiled] = {}
