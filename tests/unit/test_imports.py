"""The import rules of pyproject's ``[tool.importlinter]`` hold (as ``make lint`` checks),
and the few that import-linter cannot express: Kafka clients are made in one module, and
models/ (outside the tree import-linter sees) imports nothing of app/."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping

import grimp
from importlinter.cli import lint_imports

from tests.helpers import ROOT

APP = ROOT / "app"
CLIENTS = APP / "kafka" / "clients.py"
# aiokafka's client classes: only app/kafka/clients.py makes them.
CLIENT_CLASSES = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "AIOKafkaClient"}


def test_the_import_contracts_are_kept(monkeypatch: object) -> None:
    monkeypatch.chdir(ROOT)  # type: ignore[attr-defined]
    assert lint_imports(no_cache=True) == 0, "run `make lint` to see the broken contract"


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's, iterative):
    each is a set of modules that reach one another through their imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_are_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e", "d"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_import_cycle_among_riverbeds_modules() -> None:
    """No module of riverbed reaches itself through its imports: every import counts, at
    the top of a module, in a function, or under TYPE_CHECKING (a cycle of those is a
    tangle still). models/ cannot take part: it imports nothing of app/ (below)."""
    graph = grimp.build_graph("riverbed", cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    described = []
    for component in _cycles(edges):
        a, b = component[0], component[1]
        there = graph.find_shortest_chain(importer=a, imported=b) or ()
        back = graph.find_shortest_chain(importer=b, imported=a) or ()
        described.append(f"{', '.join(component)}: {' -> '.join([*there, *back[1:]])}")
    assert not described, "import cycles:\n" + "\n".join(described)


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every module a file imports, at any depth (lazy imports in functions too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from riverbed import models` is riverbed.models
                yield node.lineno, f"{node.module}.{alias.name}"


def _constructions(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Calls of an aiokafka client class by its name (``AIOKafkaConsumer(...)``,
    ``aiokafka.AIOKafkaConsumer(...)``, however imported)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in CLIENT_CLASSES:
                yield node.lineno, name


def test_only_kafka_imports_aiokafka_and_only_clients_makes_its_clients() -> None:
    """No module outside app/kafka/ imports aiokafka (lazily either); no module but
    app/kafka/clients.py calls an aiokafka client class. (A client class reached under
    another name, ``C = AIOKafkaConsumer; C(...)``, is not seen: the import is, outside
    app/kafka/.)"""
    wrong = []
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT)
        if path.parent != APP / "kafka":
            wrong += [f"{rel}:{n}: imports {m}" for n, m in _imports(tree)
                      if m.split(".")[0] == "aiokafka"]  # fmt: skip
        if path != CLIENTS:
            wrong += [f"{rel}:{n}: makes an {c}" for n, c in _constructions(tree)]
    assert not wrong, "use riverbed.kafka.clients:\n" + "\n".join(wrong)


def test_the_catalog_imports_nothing_of_the_app() -> None:
    """models/ is installed as riverbed.models from its own folder, which import-linter
    (it walks app/, the folder of riverbed) does not see: checked here instead."""
    wrong = []
    for path in sorted((ROOT / "models").rglob("*.py")):
        for n, module in _imports(ast.parse(path.read_text(), str(path))):
            own = module == "riverbed.models" or module.startswith("riverbed.models.")
            if module.split(".")[0] == "riverbed" and not own:
                wrong.append(f"{path.relative_to(ROOT)}:{n}: imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_function_in_app_is_over_80_lines() -> None:
    # Issue 28: a function a reader cannot hold in view is split, create_app is wiring.
    import ast

    long = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []
