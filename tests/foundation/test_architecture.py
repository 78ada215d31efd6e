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
    # L2 order books (docs/BOOKS.md): sync machines over ingest's helpers; their storage over analytics' partitions,
    # retention and dead letters; their live push over analytics' push path and group names.
    {"books"},
    {"simulator"},  # test tooling over ingest and books: nothing below it may import it
    {"history", "backtest", "notifications"},
    {"prediction"},
    # Each user's alert rules and firings; users' tokens, watchlists, quotas and ownership: the dashboard uses both.
    {"alerts", "accounts"},
    {"dashboard"},
]
# The project's composition root wires the apps' URLs and sockets together: it may import any app.
COMPOSITION_ROOT = {"cryptoproject.urls", "cryptoproject.asgi", "cryptoproject.wsgi"}
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


def imports_of_the_simulator(graph: Graph) -> list[str]:
    """``a -> simulator.b`` for every module outside the simulator app that imports it."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if target.split(".")[0] == "simulator" and module.split(".")[0] != "simulator"
    ]


def test_no_production_app_imports_the_simulator():
    # The simulator, replay and recorder are test tooling: the layers already keep ingest and analytics from them,
    # and no higher app needs them either; the tests, benchmarks and chaos (not apps) are their only users.
    assert imports_of_the_simulator(project_graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    # A checker that finds nothing proves nothing: the same functions on a small tree with both faults in it.
    for package, files in {
        "analytics": {
            "__init__.py": "",
            "a.py": "from analytics import b\n",
            "b.py": "def f():\n    from . import a\n",
        },
        "dashboard": {"__init__.py": "", "groups.py": "X = 1\n"},
        "ingest": {"__init__.py": "", "c.py": "import dashboard.groups\n", "e.py": "from simulator import server\n"},
        "simulator": {"__init__.py": "", "server.py": "from ingest import c\n"},
        "cryptoproject": {"__init__.py": "", "urls.py": "from dashboard import groups\n"},
    }.items():
        (tmp_path / package).mkdir()
        for name, text in files.items():
            (tmp_path / package / name).write_text(text)
    (tmp_path / "ingest" / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from analytics import a\n"
    )
    graph = import_graph(module_files(tmp_path, {"analytics", "dashboard", "ingest", "cryptoproject", "simulator"}))
    assert cycles(graph) == [["analytics.a", "analytics.b"]]
    # the URLconf may; TYPE_CHECKING is not run; the simulator may import ingest, not the other way round
    assert upward_imports(graph) == ["ingest.c -> dashboard.groups", "ingest.e -> simulator.server"]
    assert imports_of_the_simulator(graph) == ["ingest.e -> simulator.server"]


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


# ------------------------------------------------------------------------------------------------------------------
# Tables: an app reads another app's tables only through that app's read functions (docs/ARCHITECTURE.md, "Reads").
# No module runs SQL naming another app's table, and no module uses another app's models, except the modules below:
# the dashboard's pages and API serialise rows of every app (and write users' rules and destinations), an alert
# rule refers to its destinations; the history import writes the candles it imports with
# one MERGE (a write, not a read). The list may only shrink: an entry no longer needed fails the test too.
# ------------------------------------------------------------------------------------------------------------------
APPS = sorted(set().union(*LAYERS))
MODEL_USERS: dict[str, set[str]] = {
    "alerts.models": {"Destination"},  # a rule's chosen destinations (a many-to-many)
    "dashboard.alert_views": {"AlertRule", "Destination", "Notification"},
    "dashboard.api.alerts": {"Alert", "AlertRule", "Destination", "Notification"},
    "dashboard.destinations": {"Destination"},
    "dashboard.api.backtests": {"BacktestRun"},
    "dashboard.api.books": {"BookMetric", "BookSnapshot"},
    "dashboard.api.predictions": {"Prediction", "PredictionModel"},
    "dashboard.api.views": {"Candle", "IndicatorPoint", "SymbolStats", "Trade", "WhaleAlert"},
    "dashboard.health": {"SymbolStats", "Trade"},
    "dashboard.me": {"Alert", "AlertRule", "SymbolStats"},
    "dashboard.management.commands.seed_demo_alerts": {"AlertRule", "Destination"},
    "dashboard.views": {"BacktestRun", "Candle", "PredictionModel", "SymbolStats", "WhaleAlert"},
    "history.importer": {"table analytics_candle"},
}
# A table named after the SQL keyword that reads or writes it (its name starts with its app's label).
_SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+([a-z][a-z0-9_]*)", re.IGNORECASE)


def model_classes(root: Path, app: str) -> set[str]:
    """The classes of ``app/models.py`` that are models (a ``models.Model`` base, or another model's)."""
    path = root / app / "models.py"
    if not path.exists():
        return set()
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases}
            if "Model" in bases or bases & found:
                found.add(node.name)
    return found


def foreign_table_uses(root: Path, apps: list[str], allowed: dict[str, set[str]]) -> list[str]:
    """``module: what`` for every use of another app's tables not in ``allowed``: SQL text naming one, an import
    of one of its models (``analytics.Candle``) or of its whole models module (``analytics.models``)."""
    models = {app: model_classes(root, app) for app in apps}
    bad = []
    for module, path in sorted(module_files(root, set(apps)).items()):
        own = module.split(".")[0]
        others = [app for app in apps if app != own]
        used: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for table in _SQL_TABLE.findall(node.value):
                    used.update(f"table {table}" for app in others if table.lower().startswith(f"{app}_"))
            elif isinstance(node, ast.ImportFrom) and not node.level:
                base = node.module or ""
                for app in others:
                    if base == f"{app}.models":
                        used.update(f"{app}.{a.name}" for a in node.names if a.name in models[app] or a.name == "*")
                    elif base == app and any(a.name == "models" for a in node.names):
                        used.add(f"{app}.models")
            elif isinstance(node, ast.Import):
                used.update(f"{app}.models" for a in node.names for app in others if a.name == f"{app}.models")
        permitted = allowed.get(module, set())
        bad += [f"{module}: {use}" for use in sorted(used) if use.rpartition(".")[2] not in permitted]
        bad += [
            f"{module}: {name} allowed but not used"
            for name in sorted(permitted - {u.rpartition(".")[2] for u in used})
        ]
    bad += [
        f"{module}: allowed but no such module" for module in sorted(set(allowed) - set(module_files(root, set(apps))))
    ]
    return bad


def test_no_app_reads_another_apps_tables_but_through_its_read_functions():
    assert foreign_table_uses(ROOT, APPS, MODEL_USERS) == []


def test_the_table_check_catches_foreign_sql_and_models(tmp_path: Path) -> None:
    for package, files in {
        "analytics": {
            "__init__.py": "",
            "models.py": "from django.db import models\nclass Candle(models.Model): pass\n"
            "class Kind(models.TextChoices): pass\nSTEP = 1\n",
            "bars.py": "SQL = 'SELECT close FROM analytics_candle'\n",  # its own table
        },
        "backtest": {
            "__init__.py": "",
            "data.py": "SQL = '''SELECT open\n  FROM analytics_candle WHERE x = 1'''\n",
            "runs.py": "from analytics.models import STEP, Candle, Kind\n",
            "charts.py": "from analytics import models\n",
            "ok.py": "from analytics.models import STEP, Kind\nfrom analytics.bars import SQL\n",
        },
        "dashboard": {"__init__.py": "", "views.py": "from analytics.models import Candle\n"},
    }.items():
        (tmp_path / package).mkdir()
        for name, text in files.items():
            (tmp_path / package / name).write_text(text)
    allowed = {"dashboard.views": {"Candle"}, "dashboard.api": {"Candle"}, "backtest.ok": {"Candle"}}
    assert foreign_table_uses(tmp_path, ["analytics", "backtest", "dashboard"], allowed) == [
        "backtest.charts: analytics.models",
        "backtest.data: table analytics_candle",
        "backtest.ok: Candle allowed but not used",
        "backtest.runs: analytics.Candle",
        "dashboard.api: allowed but no such module",
    ]
