"""``scripts/stack.sh up`` with one of its ports held by another process (another checkout's stack)
stops before starting anything and says which port, which variable, and what to do; a running stack of its own is
still no conflict (``up`` twice in a row succeeds)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.harness import stack_environment
from tests.conftest import ROOT

# A stack number nothing else uses (scripts/stack_env.sh 6: Kafka 9152, its controller 9153, PostgreSQL 15492, its
# replica 15493, Redis 16439, .stack-6/): the test holds one of its ports, so no server of it ever starts.
STACK = 6
STACK_SH = str(ROOT / "scripts" / "stack.sh")


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    """Stack 6's environment; whatever the test left of that stack is stopped and deleted afterwards."""
    env = stack_environment(STACK)
    env["STACK_PG_REPLICA"] = "1"  # the replica's port is checked too
    yield env
    subprocess.run(["bash", STACK_SH, "down"], env=env, capture_output=True, timeout=120, check=False)
    shutil.rmtree(env["STACK_DIR"], ignore_errors=True)


def held(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port``: the other process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


@pytest.mark.parametrize(
    ("variable", "server"),
    [
        ("STACK_PG_PORT", "PostgreSQL"),
        ("STACK_PG_REPLICA_PORT", "PostgreSQL replica"),
        ("STACK_REDIS_PORT", "Redis"),
        ("STACK_KAFKA_PORT", "Kafka"),
        ("STACK_KAFKA_CONTROLLER_PORT", "Kafka controller"),
    ],
)
def test_up_names_a_port_another_process_holds_and_the_remedy(
    stack_env: dict[str, str], variable: str, server: str
) -> None:
    port = int(stack_env[variable])
    with held(port):
        result = subprocess.run(
            ["bash", STACK_SH, "up"], cwd=ROOT, env=stack_env, capture_output=True, text=True, timeout=120, check=False
        )
    assert result.returncode != 0
    assert (
        f"[stack] ERROR: 127.0.0.1:{port} ({server}, {variable}) is already in use by another process, "
        f"not this stack ({stack_env['STACK_DIR']})." in result.stderr
    )
    assert "Stop the other stack (make services-down in its checkout)" in result.stderr
    assert 'eval "$(bash scripts/stack_env.sh N)"' in result.stderr
    # Checked before anything starts: no server of this stack was left running.
    status = subprocess.run(["bash", STACK_SH, "status"], env=stack_env, capture_output=True, text=True, check=False)
    assert " up " not in status.stdout, status.stdout
    assert not (Path(stack_env["STACK_DIR"]) / "postgres" / "PG_VERSION").exists()


def test_a_port_held_by_one_server_stops_the_start_of_that_server_alone(stack_env: dict[str, str]) -> None:
    """``stack.sh up redis`` (fault tests start one server) checks that server's port too."""
    port = int(stack_env["STACK_REDIS_PORT"])
    with held(port):
        result = subprocess.run(
            ["bash", STACK_SH, "up", "redis"], env=stack_env, capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode != 0
    assert f"127.0.0.1:{port} (Redis, STACK_REDIS_PORT) is already in use by another process" in result.stderr


def test_up_on_this_runs_own_running_stack_is_no_conflict() -> None:
    """The suite's stack is up (its servers hold every port): ``up`` again checks nothing of it and succeeds."""
    result = subprocess.run(
        ["bash", STACK_SH, "up"], cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "already in use" not in result.stderr
    assert "Redis already up" in result.stderr


def ephemeral_range() -> tuple[int, int]:
    """The machine's range of ports for outgoing connections (Linux's default when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return 32768, 60999
    return int(low), int(high)


def test_no_stack_port_lies_in_the_ephemeral_range() -> None:
    """No port of a stack the suite uses (0-69: the default, the fault tests' and the workers' stacks, with three
    Kafka nodes each) can be taken for a moment by an outgoing connection, which would stop that stack's start
    (or this module's ``held``) with "Address already in use"; nor do two stacks share a port."""
    low, high = ephemeral_range()
    owner: dict[int, int] = {}
    for number in range(70):
        env = stack_environment(number)
        kafka = int(env["STACK_KAFKA_PORT"])
        ports = {int(env[name]) for name in ("STACK_PG_PORT", "STACK_PG_REPLICA_PORT", "STACK_REDIS_PORT")}
        ports |= {kafka, int(env["STACK_KAFKA_CONTROLLER_PORT"])} | set(range(kafka, kafka + 6))
        for port in ports:
            assert not low <= port <= high, f"stack {number}: port {port} lies in {low}-{high}"
            assert owner.setdefault(port, number) == number, f"port {port}: stacks {owner[port]} and {number}"


def test_servers_left_running_on_the_old_ports_move_to_this_stacks_ports(stack_env: dict[str, str]) -> None:
    """A checkout whose PostgreSQL and Redis still run on other ports (as after the move from 55432 + 10 N and
    56379 + 10 N; the cluster's postgresql.conf names the port it was initialised with) gets them restarted on the
    ports its environment names. The "old" ports here are free ones below the ephemeral range, so that no outgoing
    connection can hold them."""
    old = stack_env | {"STACK_PG_PORT": "15495", "STACK_REDIS_PORT": "16445"}
    for env in (old, stack_env):
        result = subprocess.run(
            ["bash", STACK_SH, "up", "postgres", "redis"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert "PostgreSQL of this stack runs on another port: restarting it on 15492" in result.stderr
    assert "Redis of this stack runs on another port: restarting it on 16439" in result.stderr
    status = subprocess.run(["bash", STACK_SH, "status"], env=stack_env, capture_output=True, text=True, check=False)
    assert "postgresql  up    127.0.0.1:15492" in status.stdout, status.stdout
    assert "redis       up    127.0.0.1:16439" in status.stdout, status.stdout
    for port in (15495, 16445):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"still listening on {port}"
