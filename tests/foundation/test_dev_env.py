"""A management command from a fresh shell. ``make setup`` writes a git-ignored ``.env`` for local
development (``scripts/dev_env.sh``: ``DJANGO_DEBUG=true`` and the local stack's URLs) that the settings read, with
the environment winning; a deployment never has it, and it cannot make one that names a public host a debug one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from cryptoproject.settings import DEFAULT_DOTENV
from tests.conftest import ROOT, manage

DEV_ENV = str(ROOT / "scripts" / "dev_env.sh")


def this_stack() -> int:
    """The number of the local stack this run uses (``scripts/stack_env.sh N``), from its PostgreSQL port."""
    offset = int(settings.DATABASES["default"]["PORT"]) - 15432
    if offset < 0 or offset % 10 or [f"127.0.0.1:{9092 + offset}"] != settings.KAFKA_BOOTSTRAP_SERVERS:
        pytest.skip("the suite does not run on a stack of scripts/stack_env.sh")
    return offset // 10


def write_dev_env(path: Path, stack: int) -> subprocess.CompletedProcess[str]:
    """What ``make setup`` runs (for ``.env`` and stack 0), here for ``path`` and ``stack``."""
    return subprocess.run(
        ["bash", DEV_ENV, str(path), str(stack)], capture_output=True, text=True, timeout=30, check=False
    )


def fresh_shell(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``args`` as from a fresh shell (``env -i PATH=/usr/bin:/bin HOME=...``) with only ``env`` on top."""
    child_env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), **env}
    return subprocess.run(args, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=120, check=False)


def test_a_command_runs_from_a_fresh_shell_with_the_dotenv_setup_writes(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    stack = this_stack()
    written = write_dev_env(dotenv, stack)
    assert written.returncode == 0, written.stderr
    assert f"[setup] wrote {dotenv} for local development" in written.stderr
    text = dotenv.read_text()
    assert "DJANGO_DEBUG=true\n" in text
    assert f"DATABASE_URL=postgres://crypto:crypto@127.0.0.1:{15432 + 10 * stack}/crypto\n" in text
    assert "never deploy" in text

    # DOTENV_FILE stands in for the checkout's own .env (the default path), which this test must not write.
    result = fresh_shell(manage("check_stack", "--timeout", "10"), DOTENV_FILE=str(dotenv))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["postgresql:", "ok", "kafka:", "ok", "redis:", "ok"]

    # The same fresh shell without the file: the failure.
    bare = fresh_shell(manage("check_stack", "--timeout", "10"), DOTENV_FILE="")
    assert bare.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false (production)" in bare.stderr


def test_the_environment_wins_over_the_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    assert write_dev_env(dotenv, this_stack()).returncode == 0
    result = fresh_shell(
        manage("check_stack", "--timeout", "3"), DOTENV_FILE=str(dotenv), REDIS_URL="redis://127.0.0.1:1/0"
    )
    assert result.returncode != 0
    assert "Redis is unreachable at REDIS_URL=redis://127.0.0.1:1/0" in result.stderr
    production = fresh_shell(manage("check"), DOTENV_FILE=str(dotenv), DJANGO_DEBUG="false")
    assert production.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in production.stderr


def test_setup_never_overwrites_an_existing_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DJANGO_DEBUG=true\nLOG_LEVEL=DEBUG\n")
    result = write_dev_env(dotenv, 0)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert dotenv.read_text() == "DJANGO_DEBUG=true\nLOG_LEVEL=DEBUG\n"


def test_debug_from_the_dotenv_is_refused_for_a_public_host(tmp_path: Path) -> None:
    """A deployment from a checkout where ``make setup`` ran, forgetting DJANGO_DEBUG: it must not run in debug."""
    dotenv = tmp_path / ".env"
    assert write_dev_env(dotenv, 0).returncode == 0
    result = fresh_shell(manage("check"), DOTENV_FILE=str(dotenv), DJANGO_ALLOWED_HOSTS="127.0.0.1,dash.example.com")
    assert result.returncode != 0
    assert (
        f"DJANGO_DEBUG=true comes from {dotenv} (local development only) while DJANGO_ALLOWED_HOSTS names "
        "dash.example.com" in result.stderr
    )
    # Said in the environment, the same hosts are a deliberate choice (docker-compose's local stack does so).
    explicit = fresh_shell(
        manage("check"), DOTENV_FILE=str(dotenv), DJANGO_DEBUG="true", DJANGO_ALLOWED_HOSTS="127.0.0.1,web"
    )
    assert explicit.returncode == 0, explicit.stderr


def test_a_missing_dotenv_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    result = fresh_shell(manage("check"), DOTENV_FILE=str(tmp_path / "absent.env"))
    assert result.returncode != 0
    assert f"DOTENV_FILE: no such file '{tmp_path / 'absent.env'}'" in result.stderr


def test_setup_writes_the_dotenv_the_settings_read_and_the_image_never_holds_one() -> None:
    assert DEFAULT_DOTENV == ROOT / ".env"
    setup = (ROOT / "Makefile").read_text().split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    assert "\t@bash scripts/dev_env.sh .env\n" in setup + "\n"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    # The image copies the whole build context (COPY . .): .dockerignore is what keeps a developer's .env out.
    assert "COPY . ." in (ROOT / "Dockerfile").read_text()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_suite_reads_no_dotenv() -> None:
    """The production-default tests (test_fail_closed, test_settings) run children with DJANGO_DEBUG unset: a
    developer's .env must not turn them into debug ones. The suite sets DOTENV_FILE empty, which children inherit."""
    assert os.environ["DOTENV_FILE"] == ""


def test_a_dotenv_written_with_the_old_ports_moves_to_the_new_ones_and_nothing_else(tmp_path: Path) -> None:
    """The stacks' PostgreSQL and Redis ports moved below the ephemeral range (55432+10N -> 15432+10N, 56379+10N ->
    16379+10N): a ``.env`` this script wrote before follows them; one it did not write is left alone."""
    old = tmp_path / ".env"
    assert write_dev_env(old, 2).returncode == 0
    written = old.read_text()
    moved_back = written.replace("127.0.0.1:15452/", "127.0.0.1:55452/").replace("127.0.0.1:16399/", "127.0.0.1:56399/")
    old.write_text(moved_back + "MY_OWN=postgres://u:p@127.0.0.1:55000/x\n")
    result = write_dev_env(old, 2)
    assert result.returncode == 0, result.stderr
    assert "the local stack URLs moved to the new ports" in result.stderr
    assert old.read_text() == written + "MY_OWN=postgres://u:p@127.0.0.1:55000/x\n"
    assert write_dev_env(old, 2).stderr == ""  # nothing left to move

    own = tmp_path / "own.env"
    own.write_text("DATABASE_URL=postgres://crypto:crypto@127.0.0.1:55432/crypto\n")
    assert write_dev_env(own, 0).stderr == ""
    assert own.read_text() == "DATABASE_URL=postgres://crypto:crypto@127.0.0.1:55432/crypto\n"
