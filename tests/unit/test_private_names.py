"""No private name of faust, mode, aiokafka or River is in riverbed's source unregistered.

``riverbed.kafka.compat.PRIVATE`` and ``riverbed.learning.river_compat.PRIVATE`` list
every private name of those libraries riverbed overrides, calls, reads or writes, and
their accessors are the only code that touches one. This test parses app/, models/,
tests/ and bench/ and holds them to that, by name: a *library name* is a ``_name`` the
installed libraries define somewhere (a function, method or class, or an attribute or
variable they assign).

What it catches:

- ``x._name`` (read, written or called; ``self._name`` too) and
  ``getattr/setattr/hasattr/delattr(x, "_name")`` where ``_name`` is a library name and
  ``x`` is a library's (a module or class imported from one, ``super()`` or ``self`` of a
  subclass of a library class whose library bases have the name) or cannot be told (a
  local variable, a call's result): registered, or, for ``x`` that cannot be told, a
  name riverbed also uses for its own objects, listed in :data:`OWN` below;
- a method or class attribute that riverbed's subclass of a library class defines under
  a name one of its library bases has (an override): registered;
- a registered name touched anywhere but in the accessors' modules, other than by such
  an override or by the base's implementation called inside it
  (``super()._new_offset(tp)``): it must go through an accessor;
- a registered name that nothing touches any more, or an :data:`OWN` entry that is not
  used, or not riverbed's (stale lists).

Receivers known to be riverbed's own, never checked: ``self`` of a class with no
library base (or whose library bases lack the name), and a module or class imported
from anything but those four libraries (``compare._client``, ``os._exit``).

What it does not catch: an ``x`` it cannot tell whose name is in :data:`OWN` (a
library object's ``_thread`` passes as the checkpointer's); a name read through a
computed string (``getattr(x, name)``), ``vars(x)`` or ``x.__dict__``; a subclass of a
library class made at run time; a private name the installed versions do not define
(a newer version's); other libraries' private names.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.machinery
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from riverbed.kafka import compat
from riverbed.learning import river_compat
from tests.helpers import ROOT

# Both tests read every module of the four libraries (~5 s, cached per process): under
# pytest-xdist they run in one process, which reads them once.
pytestmark = pytest.mark.xdist_group("private_names")

LIBRARIES = frozenset({"faust", "mode", "aiokafka", "river"})
SOURCES = ("app", "models", "tests", "bench")
ACCESSORS = frozenset({ROOT / "app/kafka/compat.py", ROOT / "app/learning/river_compat.py"})
PRIVATE_NAME = re.compile(r"_[A-Za-z][A-Za-z0-9_]*")
REGISTERED = {p.name for p in (*compat.PRIVATE, *river_compat.PRIVATE)}
GETATTRS = frozenset({"getattr", "setattr", "hasattr", "delattr"})

# Names riverbed gives its own objects that a library happens to define too, read or
# written on a receiver this test cannot tell (``cp._thread``: a Checkpointer).
OWN = {
    "_thread": "Checkpointer's capture thread (app/checkpoint/snapshots.py), read by tests",
    "_pos": "ScoreWindow's positives (app/learning/judgment.py), read by tests",
}


def _private(name: str) -> bool:
    return bool(PRIVATE_NAME.fullmatch(name)) and not name.endswith("__")


@functools.cache
def library_names() -> frozenset[str]:
    """Every private name the installed libraries define (read from their source)."""
    names: set[str] = set()
    for library in LIBRARIES:
        # Found on sys.path: once imported, faust is a lazy module with no __spec__.
        spec = importlib.machinery.PathFinder.find_spec(library)
        assert spec is not None and spec.origin is not None
        for path in Path(spec.origin).parent.rglob("*.py"):
            try:
                tree = ast.parse(path.read_bytes())
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    names.add(node.attr)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return frozenset(n for n in names if _private(n))


def _sources() -> Iterator[Path]:
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def _module_name(path: Path) -> str | None:
    """The import name of a source file (None: not importable as a module)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "app":
        parts[0] = "riverbed"
    elif parts[0] == "models":
        parts.insert(0, "riverbed")
    elif parts[0] != "tests":
        return None
    if parts[-1] in ("__main__", "conftest"):  # running it, or pytest's own
        return None
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _library_bases(cls: type) -> list[type]:
    return [k for k in cls.__mro__ if k.__module__.split(".")[0] in LIBRARIES]


def _belongs(bases: list[type], name: str) -> bool:
    """Whether a library class among ``bases`` has ``name`` (defined or assigned)."""
    for klass in bases:
        if name in vars(klass):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if f"self.{name} =" in source or f"self.{name}: " in source:
            return True
    return False


@dataclass
class Use:
    where: str  # path:line
    name: str
    kind: str  # "library" (a library's receiver), "unknown", "override", "base call"


@dataclass
class Scan(ast.NodeVisitor):
    """The private-name uses of one file that may be a library's."""

    path: Path
    imports: dict[str, str]  # name bound by an import -> the module it comes from
    module: Any  # the imported module (None: not importable)
    uses: list[Use] = field(default_factory=list)
    own_defined: set[str] = field(default_factory=set)  # on riverbed's own classes
    _classes: list[list[type] | None] = field(default_factory=list)  # library bases
    _functions: list[str] = field(default_factory=list)

    def _at(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"

    def _bases_of(self, node: ast.ClassDef) -> list[type] | None:
        """The library bases of a class (None: none); by import when not importable."""
        cls = getattr(self.module, node.name, None) if not self._classes else None
        if isinstance(cls, type):
            return _library_bases(cls) or None
        roots = {self.imports.get(ast.unparse(b).split(".")[0], "") for b in node.bases}
        return [object] if any(r.split(".")[0] in LIBRARIES for r in roots) else None

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = self._bases_of(node)
        for item in node.body:  # methods and class attributes: overrides?
            names = []
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [item.name]
            elif isinstance(item, ast.Assign):
                names = [t.id for t in item.targets if isinstance(t, ast.Name)]
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names = [item.target.id]
            for name in filter(_private, names):
                if bases is not None and self._library(bases, name):
                    self.uses.append(Use(self._at(item), name, "override"))
                elif bases is None:
                    self.own_defined.add(name)
        self._classes.append(bases)
        self.generic_visit(node)
        self._classes.pop()

    def _library(self, bases: list[type], name: str) -> bool:
        if bases == [object]:  # not importable: by name
            return name in library_names()
        return _belongs(bases, name)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._functions.append(node.name)
        self.generic_visit(node)
        self._functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _receiver(self, value: ast.expr, name: str) -> str | None:
        """``library``, ``unknown``, ``base call`` or None (riverbed's own)."""
        bases = self._classes[-1] if self._classes else None
        in_override = bool(self._functions) and self._functions[-1] == name
        if isinstance(value, ast.Name) and value.id in ("self", "cls") and self._classes:
            if bases is not None and self._library(bases, name):
                return "library"
            return None
        if isinstance(value, ast.Call) and ast.unparse(value.func) == "super":
            if bases is not None and self._library(bases, name):
                return "base call" if in_override else "library"
            return None
        if isinstance(value, ast.Name) and value.id in self.imports:
            if self.imports[value.id].split(".")[0] not in LIBRARIES:
                return None  # a module or class of riverbed's, the stdlib's, another's
            return "base call" if in_override and bases is not None else "library"
        return "unknown" if name in library_names() else None

    def _use(self, node: ast.AST, value: ast.expr, name: str, store: bool) -> None:
        kind = self._receiver(value, name)
        if kind is not None:
            self.uses.append(Use(self._at(node), name, kind))
        elif store and isinstance(value, ast.Name) and value.id == "self" and self._classes:
            self.own_defined.add(name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _private(node.attr):
            self._use(node, node.value, node.attr, isinstance(node.ctx, ast.Store))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and f.id in GETATTRS and len(node.args) >= 2:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _private(arg.value):
                self._use(node, node.args[0], arg.value, f.id == "setattr")
        self.generic_visit(node)


def _imports(tree: ast.AST) -> dict[str, str]:
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                bound[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom):
            source = "." * node.level + (node.module or "")
            for a in node.names:
                bound[a.asname or a.name] = f"{source}.{a.name}"
    return bound


@functools.cache
def scans() -> tuple[Scan, ...]:
    out = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        name = _module_name(path)
        module = importlib.import_module(name) if name else None
        scan = Scan(path, _imports(tree), module)
        scan.visit(tree)
        out.append(scan)
    return tuple(out)


def test_every_private_name_of_the_libraries_in_the_source_is_registered() -> None:
    wrong = [
        f"{u.where}: {u.name} ({u.kind})"
        for s in scans()
        for u in s.uses
        if u.name not in REGISTERED and not (u.kind == "unknown" and u.name in OWN)
    ]
    assert not wrong, (
        "private names of faust, mode, aiokafka or River used unregistered: list them in "
        "riverbed.kafka.compat.PRIVATE or riverbed.learning.river_compat.PRIVATE, with "
        "an accessor (or, if riverbed's own object has this name too, in OWN here):\n"
        + "\n".join(wrong)
    )


def test_registered_names_are_touched_only_by_accessors_and_overrides() -> None:
    wrong = [
        f"{u.where}: {u.name} ({u.kind})"
        for s in scans()
        if s.path not in ACCESSORS
        for u in s.uses
        if u.name in REGISTERED
        and u.kind not in ("override", "base call")
        and not (u.kind == "unknown" and u.name in OWN)
    ]
    assert not wrong, "use an accessor of compat or river_compat:\n" + "\n".join(wrong)


def test_the_lists_are_current() -> None:
    touched = {u.name for s in scans() for u in s.uses}
    stale = sorted(REGISTERED - touched)
    assert not stale, f"registered but touched nowhere any more: {stale}"
    unknown = {u.name for s in scans() for u in s.uses if u.kind == "unknown"}
    own = set().union(*(s.own_defined for s in scans()))
    assert set(OWN) <= unknown, f"OWN entries not used: {sorted(set(OWN) - unknown)}"
    assert set(OWN) <= own, f"OWN entries riverbed does not define: {sorted(set(OWN) - own)}"


def test_the_scan_sees_what_it_promises(tmp_path: Path) -> None:
    """A read through a library's module, an override and an unknown receiver are seen."""
    source = (
        "from river import checks\n"
        "from mode import Service\n"
        "class Loop(Service):\n"
        "    def _stopped_set(self):\n"
        "        Service._stopped_set(self)\n"
        "        return self._stopped\n"
        "def f(consumer):\n"
        "    checks._yield_datasets\n"
        "    return consumer._fetcher, getattr(consumer, '_coordinator')\n"
    )
    path = ROOT / "tests" / "_scan_probe.py"  # a name under ROOT, never written
    tree = ast.parse(source)
    scan = Scan(path, _imports(tree), None)
    scan.visit(tree)
    assert [(u.name, u.kind) for u in scan.uses] == [
        ("_stopped_set", "override"),
        ("_stopped_set", "base call"),
        ("_stopped", "library"),
        ("_yield_datasets", "library"),
        ("_fetcher", "unknown"),
        ("_coordinator", "unknown"),
    ]
