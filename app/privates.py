"""The private names of other libraries riverbed relies on: how one is registered and checked.

Faust, mode, aiokafka and River have no public hook for a few things riverbed does
(``app/kafka/transport.py`` says why for Faust's consumer). Each private name riverbed
overrides, calls, reads or writes is registered, with the reason, in one of two lists:
``riverbed.kafka.compat.PRIVATE`` (faust, mode, aiokafka) and
``riverbed.learning.river_compat.PRIVATE`` (River). Next to each list are the accessors,
the only code that reads or writes those names; what ``app/kafka/transport.py``
overrides (a subclass's method of the same name) is registered there too.

:func:`check` verifies the names against the installed libraries: a name that is gone,
or no longer what riverbed expects, raises :class:`~riverbed.exceptions.IncompatibleLibrary`
naming the library, its version and the name, instead of a wrong default at run time.
The worker checks faust's, mode's and aiokafka's when it is built; ``riverbed inspect``
checks River's; the unit tests check every name, those only tests use included
(``tests/unit/test_compat.py``), and that no private name of those libraries appears in
riverbed's source unregistered (``tests/unit/test_private_names.py``).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from riverbed.exceptions import IncompatibleLibrary

__all__ = ["Private", "check", "present"]


@dataclass(frozen=True)
class Private:
    """One private name of a library riverbed relies on.

    ``owner`` is ``module:Class``, or ``module`` for a module's own function. ``kind`` is
    ``method`` (a callable the class has: overridden by riverbed's subclass, or called),
    ``attribute`` (assigned as ``self.<name>`` somewhere in the class's own code, or a
    base's) or ``function`` (of the module). ``tests_only``: only riverbed's tests use
    it, so a worker does not refuse to start without it (the unit tests check it).
    """

    library: str
    owner: str
    name: str
    kind: str
    why: str
    tests_only: bool = False

    @property
    def where(self) -> str:
        return f"{self.owner.replace(':', '.')}.{self.name}"


def _owner(path: str) -> Any:
    module, _, name = path.partition(":")
    found = importlib.import_module(module)
    return getattr(found, name) if name else found


def present(p: Private) -> bool:
    """Whether the installed library has ``p`` as registered."""
    try:
        owner = _owner(p.owner)
    except (ImportError, AttributeError):
        return False
    if p.kind in ("method", "function"):
        return callable(getattr(owner, p.name, None))
    for klass in getattr(owner, "__mro__", ()):  # assigned as self.<name> in it or a base
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if f"self.{p.name} =" in source or f"self.{p.name}: " in source:
            return True
    return False


_PASSED: set[tuple[Private, ...]] = set()


def check(names: tuple[Private, ...], *, tests: bool = False) -> None:
    """Verify ``names`` against the installed libraries (those only tests use, too, with
    ``tests``). Reading the libraries' sources takes ~0.35 s: once a process.

    Raises
    ------
    IncompatibleLibrary
        Naming the library, its installed version and each missing name.

    """
    wanted = tuple(p for p in names if tests or not p.tests_only)
    if wanted in _PASSED:
        return
    missing = [p for p in wanted if not present(p)]
    if not missing:
        _PASSED.add(wanted)
        return
    lines = [f"{p.library} {version(p.library)}: {p.where} ({p.kind}; {p.why})" for p in missing]
    msg = (
        "the installed libraries lack private names riverbed relies on; install the "
        "versions pyproject.toml pins:\n  " + "\n  ".join(lines)
    )
    raise IncompatibleLibrary(msg)
