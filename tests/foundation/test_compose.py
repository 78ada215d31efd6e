"""docker-compose.yml is a valid Compose file that mirrors the local stack and the app processes.

Validated against the Compose specification's JSON schema (tests/foundation/compose_spec.json, from the
compose-spec project as shipped in docker-compose 1.29.2, Apache-2.0), since no Docker engine runs here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from ingest.exchanges import names
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

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


def test_default_services_are_in_no_profile() -> None:
    services = load_compose()["services"]
    for name in ("kafka", "postgres", "redis", "migrate", "web", "simulator", "ingest", "consumer", "worker", "beat"):
        assert "profiles" not in services[name], name


def scale_services() -> dict[str, Any]:
    return {n: s for n, s in load_compose()["services"].items() if "scale" in s.get("profiles", [])}


def test_scale_profile_has_three_kafka_brokers_with_replication_factor_3_and_min_isr_2() -> None:
    scale = scale_services()
    brokers = [scale[f"kafka-{i}"]["environment"] for i in (1, 2, 3)]
    assert [b["KAFKA_NODE_ID"] for b in brokers] == [1, 2, 3]
    assert len({b["CLUSTER_ID"] for b in brokers}) == 1
    assert {b["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers} == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for i, broker in enumerate(brokers, start=1):
        assert broker["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert broker["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://kafka-{i}:9092"
        assert broker["KAFKA_DEFAULT_REPLICATION_FACTOR"] == broker["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert broker["KAFKA_MIN_INSYNC_REPLICAS"] == 2
    assert len({scale[f"kafka-{i}"]["volumes"][0] for i in (1, 2, 3)}) == 3  # a data volume each


def test_scale_profile_streams_a_postgres_replica_of_the_primary() -> None:
    services = load_compose()["services"]
    replica = services["postgres-replica"]
    assert replica["image"] == "postgres:15"
    script = replica["command"][0]
    assert "pg_basebackup -h postgres -U replicator" in script
    assert " -R " in script
    assert "postgres" in replica["depends_on"]
    # The primary lets that role in: its init script makes the role and the pg_hba.conf entry.
    mount = next(v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v)
    init = (ROOT / mount.split(":")[0]).read_text()
    assert "CREATE ROLE replicator REPLICATION LOGIN" in init
    assert "host replication replicator all scram-sha-256" in init


def test_scale_profile_app_processes_use_the_cluster_and_the_replica() -> None:
    from cryptoproject.queues import CeleryQueue

    apps = {n: s for n, s in scale_services().items() if s.get("build") == "."}
    servers = {"postgres", "postgres-replica", "redis", "kafka-1", "kafka-2", "kafka-3"}
    for name, service in apps.items():
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092", name
        assert env["KAFKA_REPLICATION_FACTOR"] == "3", name
        assert env["DATABASE_REPLICA_URL"].endswith("@postgres-replica:5432/crypto"), name
        assert servers - {"postgres-replica"} <= set(service["depends_on"]), name
    # Every queue has a worker of its own kind, and only one: a fleet per queue scales on its own.
    queues = [q for s in apps.values() if s["command"][3:5] == ["worker", "-Q"] for q in s["command"][5].split(",")]
    assert sorted(queues) == sorted(CeleryQueue)
    beats = [n for n, s in apps.items() if s["command"][3:4] == ["beat"]]
    assert len(beats) == 1
    # A consumer group no larger than the trades topic's partitions (extra members would sit idle).
    consumer = apps["consumer-scale"]
    assert consumer["command"][2] == "consume_trades"
    assert consumer["deploy"]["replicas"] <= int(consumer["environment"]["KAFKA_TRADES_PARTITIONS"])
    # One ingest process per exchange.
    exchanges = [arg.split("=", 1)[1] for s in apps.values() for arg in s["command"] if arg.startswith("--exchange=")]
    assert sorted(exchanges) == sorted(names())


def _flag(command: list[str], name: str) -> str | None:
    return next((arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")), None)


def test_default_services_run_the_demos_exchanges_each_ingest_reading_its_own_simulator() -> None:
    """The Procfile of ``make demo`` runs a simulator and an ingest per exchange; so does the default compose."""
    services = {n: s for n, s in load_compose()["services"].items() if "profiles" not in s}
    procfile = [line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line[:1].isalpha()]
    demo_ingests = {
        cmd.split("--exchange ")[1].split()[0]: cmd.split("--symbols ")[1].split()[0]
        for name, cmd in procfile
        if name.startswith("ingest-")
    }
    simulators = {
        (name, _flag(s["command"], "port")): _flag(s["command"], "exchange")
        for name, s in services.items()
        if s.get("command", [])[:3] == ["python", "manage.py", "simulate_exchange"]
    }
    ingests = {
        str(_flag(s["command"], "exchange")): s
        for s in services.values()
        if s.get("command", [])[:3] == ["python", "manage.py", "ingest"]
    }
    assert {exchange: _flag(s["command"], "symbols") for exchange, s in ingests.items()} == demo_ingests
    # Each simulator keeps its trade ids across restarts, on a volume (a replay would issue its ids again).
    for name, _port in simulators:
        assert _flag(services[name]["command"], "state"), name
        assert "simulator-state:/state" in services[name]["volumes"], name
    for exchange, service in ingests.items():
        for kind, scheme in (("WS", "ws"), ("REST", "http")):
            url = urlsplit(service["environment"][f"{exchange.upper()}_{kind}_URL"])
            assert url.scheme == scheme, (exchange, kind)
            assert simulators[(url.hostname, str(url.port))] == exchange, (exchange, kind)
            assert url.hostname in service["depends_on"], exchange


def test_scale_profile_runs_production_settings_with_the_secret_key_from_the_environment() -> None:
    """The production topology runs as production: no debug pages, no development secret key."""
    apps = {n: s for n, s in scale_services().items() if s.get("build") == "."}
    assert apps
    for name, service in apps.items():
        env = service["environment"]
        assert env["DJANGO_DEBUG"] == "false", name
        # From the environment, with no default: unset, it is empty and production settings refuse to start.
        assert env["DJANGO_SECRET_KEY"] == "${DJANGO_SECRET_KEY:-}", name
    # The default profile stays the local demo.
    assert load_compose()["services"]["web"]["environment"]["DJANGO_DEBUG"] == "true"
    # No ${VAR:?...}: Compose interpolates every service before it applies profiles, so one would stop a plain
    # `docker compose up` of the default services too.
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{\w+:?\?", text)


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="",
        DJANGO_ALLOWED_HOSTS="web",
        DJANGO_SETTINGS_MODULE="cryptoproject.settings",
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
