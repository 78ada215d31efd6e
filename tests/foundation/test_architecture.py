"""The apps' dependencies run one way and no module imports itself back (docs/ARCHITECTURE.md, "Layers").

The import graph is read from the source with :mod:`ast` (every import, also those inside functions, which run
too; not those under ``if TYPE_CHECKING:``, which never run), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptoproject.queues import CeleryQueue
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

# Lower layers first: an app may import its own layer's modules and those of lower layers, never a higher one.
LAYERS: list[set[str]] = [
    {"cryptoproject"},
    {"ingest"},
    {"analytics"},
    {"history", "backtest"},
    {"prediction"},
    {"dashboard"},
]
# The project's composition root wires the apps' URLs and sockets together: it may import any app.
COMPOSITION_ROOT = {"cryptoproject.urls", "cryptoproject.asgi"}
Graph = dict[str, set[str]]


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, apps in enumerate(LAYERS) if top in apps)


def module_files(root: Path, packages: set[str]) -> dict[str, Path]:
    """Module name -> file, for every module of ``packages`` under ``root`` (migrations left out: generated)."""
    out = {}
    for package in sorted(packages):
        for path in (root / package).rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            if "migrations" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, package: str) -> Iterator[str]:
    """Every dotted name an import statement in ``tree`` may bring in (``from a import b``: ``a.b`` and ``a``)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def import_graph(files: dict[str, Path]) -> Graph:
    """Module -> the project modules it imports (a name is resolved to the longest module it names)."""
    graph: Graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for imported in _imported_names(ast.parse(path.read_text(), str(path)), package):
            while imported and imported not in files:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        # `from a import b` yields both `a.b` and `a`: when `a.b` is a module, the package itself is not imported
        # for its own sake, and counting it would invent cycles through every package's __init__.
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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


def upward_imports(graph: Graph) -> list[str]:
    """``a -> b`` for every import of a higher layer, or of another app of the same layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        if module in COMPOSITION_ROOT:
            continue
        for target in sorted(targets):
            same_app = module.split(".")[0] == target.split(".")[0]
            if not same_app and layer_of(target) >= layer_of(module):
                bad.append(f"{module} -> {target}")
    return bad


def project_graph() -> Graph:
    return import_graph(module_files(ROOT, set().union(*LAYERS)))


def test_the_apps_depend_only_on_lower_layers():
    assert upward_imports(project_graph()) == []


def test_no_import_cycle_between_modules():
    assert cycles(project_graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    # A checker that finds nothing proves nothing: the same functions on a small tree with both faults in it.
    for package, files in {
        "analytics": {
            "__init__.py": "",
            "a.py": "from analytics import b\n",
            "b.py": "def f():\n    from . import a\n",
        },
        "dashboard": {"__init__.py": "", "groups.py": "X = 1\n"},
        "ingest": {"__init__.py": "", "c.py": "import dashboard.groups\n"},
        "cryptoproject": {"__init__.py": "", "urls.py": "from dashboard import groups\n"},
    }.items():
        (tmp_path / package).mkdir()
        for name, text in files.items():
            (tmp_path / package / name).write_text(text)
    (tmp_path / "ingest" / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from analytics import a\n"
    )
    graph = import_graph(module_files(tmp_path, {"analytics", "dashboard", "ingest", "cryptoproject"}))
    assert cycles(graph) == [["analytics.a", "analytics.b"]]
    assert upward_imports(graph) == ["ingest.c -> dashboard.groups"]  # the URLconf may; TYPE_CHECKING is not run


def test_every_queue_has_a_worker_in_both_procfiles():
    for procfile in ("Procfile", "Procfile.live"):
        served = set()
        for queues in re.findall(r"celery -A cryptoproject worker -Q (\S+)", (ROOT / procfile).read_text()):
            served.update(queues.split(","))
        assert served == {queue.value for queue in CeleryQueue}, procfile


@pytest.mark.parametrize("queue", list(CeleryQueue))
def test_the_celery_app_declares_every_queue(queue: CeleryQueue) -> None:
    from cryptoproject.celery import app

    assert queue.value in {q.name for q in app.conf.task_queues}
