"""Copies of River objects whose attributes are fast to read again (CPython 3.11).

CPython 3.11 keeps a plain object's attributes in an inline values array until
something asks for its ``__dict__``; the interpreter's specialised attribute loads
and stores read that array directly. Reading ``obj.__dict__`` (pickle does it for
every object it saves, and so does ``copy``) gives the object a real dict for good,
and every later ``self.attr`` of it becomes a dict lookup. A snapshot pickles the
live learner, so after a partition's first checkpoint its model ran slower for the
rest of the process. Per event, before and after one ``pickle.dumps`` of the learner:
``logreg`` 51.6 -> 54.1 µs, ``hoeffding`` 255 -> 314 µs, ``hst`` 86 -> 140 µs; in
``make bench`` it cost riverbed ~8% of its events/s (``docs/performance.md``,
change 16).

:func:`inline_copy` makes an equal copy whose objects have inline attributes again:
it pickles the graph with pickle's own reduce protocol, except that an object
restored by default (``copyreg.__newobj__`` and a state, no ``__setstate__``) gets
:func:`_set_inline` as its state setter, which sets the state attribute by attribute.
Strings are kept by reference, so the model's dict keys stay the very objects
orjson's key cache hands the decoder, and lookups hit on identity. The copy pickles
to the same bytes as the original. It costs about as much as pickling and unpickling
the graph once: 0.9 ms for a ``logreg`` learner, 18 ms for ``hoeffding``.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any, TypeVar

__all__ = ["inline_copy"]

T = TypeVar("T")
# What object.__reduce_ex__ returns for an object pickle restores by default.
_NEWOBJ: Any = copyreg.__newobj__  # type: ignore[attr-defined]


def _set_inline(obj: Any, state: Any) -> None:
    """pickle's default BUILD, with ``setattr`` where pickle writes to ``__dict__``."""
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    for attrs in (state, slots):
        if attrs:
            for name, value in attrs.items():
                setattr(obj, name, value)


class _Saver(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.strings: list[str] = []

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) is str:
            self.strings.append(obj)
            return len(self.strings) - 1
        return None

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if isinstance(obj, type) or getattr(cls, "__setstate__", None) is not None:
            return NotImplemented
        try:
            rv = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        except Exception:
            return NotImplemented  # pickle reports it as it would have
        if not isinstance(rv, tuple) or len(rv) < 3 or rv[0] is not _NEWOBJ:
            return NotImplemented
        func, args, state, items, dict_items = (*rv, None, None)[:5]
        return func, args, state, items, dict_items, _set_inline


class _Loader(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, strings: list[str]) -> None:
        super().__init__(file)
        self.strings = strings

    def persistent_load(self, pid: Any) -> Any:
        return self.strings[pid]


def inline_copy(obj: T) -> T:
    """An equal copy of ``obj`` (same strings) whose objects have inline attributes.

    Examples
    --------
    >>> import pickle
    >>> from riverbed import models
    >>> model = models.build("logreg")
    >>> model.learn_one({"a": 1.0}, True)
    >>> copy = inline_copy(model)
    >>> copy is model, pickle.dumps(copy) == pickle.dumps(model)
    (False, True)

    """
    buf = io.BytesIO()
    saver = _Saver(buf)
    saver.dump(obj)
    buf.seek(0)
    loaded: T = _Loader(buf, saver.strings).load()
    return loaded
