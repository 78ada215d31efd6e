"""Which stack a pytest-xdist worker runs on (tests/stacks.py): one per worker, none shared between checkouts."""

from __future__ import annotations

import os

import pytest

from tests.stacks import MARKER, use_worker_stack, worker_stack_base, worker_stack_number

pytestmark = pytest.mark.unit


def test_each_worker_gets_the_next_stack_from_the_base() -> None:
    assert worker_stack_number({"PYTEST_XDIST_WORKER": "gw0"}) == 20
    assert worker_stack_number({"PYTEST_XDIST_WORKER": "gw3"}) == 23
    assert worker_stack_number({"PYTEST_XDIST_WORKER": "gw1", "PYTEST_STACK_BASE": "40"}) == 41


def test_a_replacement_worker_takes_over_the_stack_of_the_one_it_replaces() -> None:
    """xdist names the replacement of a crashed worker gw2, gw3, ... (for 2 workers): stacks 20 and 21 again."""
    assert worker_stack_number({"PYTEST_XDIST_WORKER": "gw2", "PYTEST_XDIST_WORKER_COUNT": "2"}) == 20
    assert worker_stack_number({"PYTEST_XDIST_WORKER": "gw5", "PYTEST_XDIST_WORKER_COUNT": "2"}) == 21


def test_outside_a_worker_the_suite_keeps_the_stack_of_the_environment() -> None:
    assert worker_stack_number({}) is None
    assert worker_stack_number({"PYTEST_XDIST_WORKER": "master"}) is None


def test_a_run_on_stack_s_gets_workers_stacks_no_other_stack_gets() -> None:
    """Stack S (scripts/stack_env.sh S: PostgreSQL on 15432 + 10 S) -> 20 + 4 S: four workers' stacks per S."""
    bases = [worker_stack_base({"STACK_PG_PORT": str(15432 + 10 * s)}) for s in range(5)]
    assert bases == [20, 24, 28, 32, 36]


def test_a_base_that_is_not_a_stack_number_is_refused_naming_the_variable() -> None:
    with pytest.raises(RuntimeError, match="PYTEST_STACK_BASE must be a stack number"):
        worker_stack_number({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_STACK_BASE": "twenty"})


def test_this_worker_runs_on_its_own_stack() -> None:
    """Under xdist, this process's environment points at the worker's stack (ports of scripts/stack_env.sh)."""
    number = os.environ.get(MARKER)
    if number is None:
        pytest.skip("not an xdist worker on a stack of its own")
    # The number the worker computed from the environment it started with (its base from the stack it was started
    # on): recomputing it now would take the worker stack's own ports as that base.
    assert os.environ["PYTEST_XDIST_WORKER"].startswith("gw")
    assert os.environ["STACK_PG_PORT"] == str(15432 + 10 * int(number))
    assert os.environ["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{9092 + 10 * int(number)}"


def test_a_worker_points_its_environment_at_its_stack_and_starts_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # stack_environment() starts from os.environ: make check's own PYTEST_WORKER_STACKS=off must not come in.
    monkeypatch.delenv("PYTEST_WORKER_STACKS", raising=False)
    environ = {"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "2"}
    started: list[str] = []
    assert use_worker_stack(environ, start=lambda: started.append(environ["STACK_PG_PORT"])) == 21
    assert started == [str(15432 + 10 * 21)]
    assert environ["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{9092 + 10 * 21}"
    assert environ[MARKER] == "21"
    # tests.settings imported again in the same worker: nothing changes, nothing starts.
    assert use_worker_stack(environ, start=lambda: started.append("again")) == 21
    assert started == [str(15432 + 10 * 21)]


def test_a_child_a_test_pointed_at_another_stack_stays_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chaos tests run their pipeline on stack 12: its children inherit the worker's variables and the marker.

    Before the fix, a child recomputed a worker stack from stack 12's ports (20 + 4 * 12 + 1 = 69) and ran there.
    """
    monkeypatch.delenv("PYTEST_WORKER_STACKS", raising=False)
    worker = {"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "2"}
    use_worker_stack(worker, start=lambda: None)
    child = worker | {"STACK_PG_PORT": str(15432 + 10 * 12), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9212"}
    before = dict(child)
    started: list[int] = []
    use_worker_stack(child, start=lambda: started.append(1))
    assert child == before
    assert started == []


def test_make_check_starts_no_stack() -> None:
    environ = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_WORKER_STACKS": "off"}
    assert use_worker_stack(environ, start=lambda: pytest.fail("no stack is started")) is None
    assert MARKER not in environ
