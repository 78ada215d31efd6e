"""The commands the README lists, run as a new user runs them, with the database away or bad input: one line
naming the setting or the argument, never a traceback, never a password."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest

from tests.conftest import ROOT, manage

SECRET = "n0t-a-real-password"
PROGRESS = re.compile(r"\d+%\|")
DOWN = {"DATABASE_URL": f"postgres://crypto:{SECRET}@127.0.0.1:1/crypto"}


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a child on this stack, with ``env`` on top."""
    child_env = {**os.environ, "DJANGO_DEBUG": "true", **env}
    return subprocess.run(
        manage(*args), cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert SECRET not in result.stdout + result.stderr
    # train_model's progress bar may have been drawn before the database was met; the rest is the one line.
    lines = [line for line in result.stderr.splitlines() if line.strip() and not PROGRESS.search(line)]
    assert len(lines) == 1, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("backtest", "--strategy", "sma_cross", "--symbol", "BTCUSDT", "--from", "2021-01-01", "--to", "2021-12-31"),
        ("train_model", "--symbol", "BTCUSDT", "--from", "2021-01-01", "--to", "2021-12-31"),
        ("drf_create_token", "demo"),
    ],
    ids=lambda args: args[0],
)
def test_a_closed_database_is_one_line_naming_database_url(args: tuple[str, ...]) -> None:
    result = run(*args, **DOWN)
    assert_one_line_error(result, "CommandError: PostgreSQL is unreachable at DATABASE_URL (127.0.0.1:1/crypto)")


def test_train_model_names_a_date_it_cannot_read() -> None:
    result = run("train_model", "--symbol", "BTCUSDT", "--from", "01-01-2021", "--to", "2021-12-31")
    assert result.returncode == 2  # argparse's usage error
    assert "Traceback" not in result.stderr
    assert "argument --from: invalid date '01-01-2021' (expected YYYY-MM-DD)" in result.stderr


def test_simulate_exchange_on_a_port_in_use_names_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("simulate_exchange", "--port", str(port), "--synthetic", "--rate", "1", "--symbols", "btcusdt")
    assert_one_line_error(result, f"CommandError: --host 127.0.0.1 --port {port}: ")
    assert "address already in use" in result.stderr


def test_check_stack_names_every_server_that_is_down() -> None:
    result = run("check_stack", "--timeout", "2", REDIS_URL=f"redis://:{SECRET}@127.0.0.1:1/0", **DOWN)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stdout.split() == ["kafka:", "ok"]  # checked although PostgreSQL, before it, was down
    assert "postgresql: PostgreSQL is unreachable at DATABASE_URL (127.0.0.1:1/crypto)" in result.stderr
    assert "redis: Redis is unreachable at REDIS_URL=redis://127.0.0.1:1/0" in result.stderr
    assert "CommandError: 2 of 3 servers do not answer: postgresql, redis" in result.stderr
    assert SECRET not in result.stdout + result.stderr
