"""docker-compose.yml is a valid Compose file that mirrors the local stack and the app processes.

Validated against the Compose specification's JSON schema (tests/foundation/compose_spec.json, from the
compose-spec project as shipped in docker-compose 1.29.2, Apache-2.0), since no Docker engine runs here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.conftest import ROOT

HERE = Path(__file__).parent


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_validates_against_the_compose_spec() -> None:
    schema = json.loads((HERE / "compose_spec.json").read_text())
    jsonschema.validate(load_compose(), schema)


def test_compose_runs_the_servers_and_every_app_process() -> None:
    services = load_compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("web", "ingest", "consumer", "worker", "beat", "simulator"):
        assert name in services, name
        assert services[name]["build"] == ".", name
    assert services["consumer"]["command"][:3] == ["python", "manage.py", "consume_trades"]
    assert "daphne" in services["web"]["command"]


def test_compose_commands_name_real_management_commands() -> None:
    from django.core.management import get_commands

    known = get_commands()
    for service in load_compose()["services"].values():
        command = service.get("command")
        if isinstance(command, list) and command[:2] == ["python", "manage.py"]:
            assert command[2] in known, command
