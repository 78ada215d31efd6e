"""Every list of exchanges in the project is the registry's (``ingest.exchanges``): the records, the simulator, the
commands, the API, the forms, the Procfiles and docker-compose."""

from __future__ import annotations

import importlib
import shlex
from typing import Any

import pytest
import yaml
from django.core.management import load_command_class

from accounts.forms import WatchlistAddForm
from dashboard.alert_views import RuleForm
from dashboard.api.params import EXCHANGE_CHOICES
from dashboard.forms import BacktestForm
from ingest.exchanges import choices_text, get, names
from ingest.records import EXCHANGES
from simulator import config as simulator_config
from simulator.base import Protocol
from simulator.feed import exchange_symbol
from simulator.server import protocol_class
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_the_derived_lists_are_the_registrys() -> None:
    assert set(names()) == EXCHANGES
    assert names() == simulator_config.EXCHANGES
    assert choices_text() == EXCHANGE_CHOICES


def _choices(app: str, command: str) -> list[str]:
    parser = load_command_class(app, command).create_parser("manage.py", command)
    (action,) = [a for a in parser._actions if a.dest == "exchange"]
    return list(action.choices or ())


@pytest.mark.parametrize(
    ("app", "command"), [("ingest", "ingest"), ("simulator", "record"), ("simulator", "simulate_exchange")]
)
def test_the_commands_offer_every_registered_exchange(app: str, command: str) -> None:
    assert _choices(app, command) == list(names())


def test_the_forms_offer_every_registered_exchange() -> None:
    for form in (WatchlistAddForm, BacktestForm):
        assert [value for value, _label in form.base_fields["exchange"].choices] == sorted(names())  # type: ignore[attr-defined]
    rule_choices = [value for value, _label in RuleForm.base_fields["exchange"].choices]  # type: ignore[attr-defined]
    assert [v for v in rule_choices if v] == sorted(names())


@pytest.mark.parametrize("name", names())
def test_the_simulator_has_a_module_per_registered_exchange(name: str) -> None:
    module = importlib.import_module(f"simulator.{name}")
    assert issubclass(module.PROTOCOL, Protocol)
    assert protocol_class(name) is module.PROTOCOL
    assert exchange_symbol(name, "btcusdt") == get(name).symbols.join("BTC", "USDT")


def _procfile(name: str) -> dict[str, list[str]]:
    lines = (ROOT / name).read_text().splitlines()
    return {
        process: shlex.split(command)
        for process, command in (line.split(":", 1) for line in lines if line[:1].isalpha())
    }


def _option(argv: list[str], option: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == f"--{option}" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(f"--{option}="):
            return arg.split("=", 1)[1]
    return None


def _runs(argv: list[str], command: str) -> bool:
    return "manage.py" in argv and argv[argv.index("manage.py") + 1 : argv.index("manage.py") + 2] == [command]


def _exchanges(commands: list[list[str]], command: str) -> list[str]:
    return sorted(str(_option(argv, "exchange")) for argv in commands if _runs(argv, command))


def test_the_demo_procfile_runs_a_simulator_and_an_ingest_of_its_demo_symbols_per_exchange() -> None:
    processes = _procfile("Procfile")
    assert _exchanges(list(processes.values()), "simulate_exchange") == sorted(names())
    assert _exchanges(list(processes.values()), "ingest") == sorted(names())
    for name in names():
        assert _option(processes[f"sim-{name}"], "exchange") == name
        ingest = processes[f"ingest-{name}"]
        assert _option(ingest, "exchange") == name
        assert _option(ingest, "symbols") == ",".join(get(name).demo_symbols)


def test_the_live_procfile_runs_an_ingest_per_exchange() -> None:
    processes = _procfile("Procfile.live")
    assert _exchanges(list(processes.values()), "ingest") == sorted(names())
    assert _exchanges(list(processes.values()), "simulate_exchange") == []  # the real exchanges, no simulator


def test_compose_runs_a_simulator_and_an_ingest_per_exchange_and_a_live_ingest_per_exchange() -> None:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    default = [s["command"] for s in services.values() if "profiles" not in s and isinstance(s.get("command"), list)]
    scale = [s["command"] for s in services.values() if "profiles" in s and isinstance(s.get("command"), list)]
    assert _exchanges(default, "simulate_exchange") == sorted(names())
    assert _exchanges(default, "ingest") == sorted(names())
    assert _exchanges(scale, "ingest") == sorted(names())
    for command in [c for c in default if _runs(c, "ingest")]:
        assert _option(command, "symbols") == ",".join(get(str(_option(command, "exchange"))).demo_symbols)
