"""Which stack a pytest-xdist worker runs on (tests/stacks.py): one per worker, none shared between checkouts."""

from __future__ import annotations

import os

import pytest

from tests.stacks import worker_stack_base, worker_stack_number

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
    """Stack S (scripts/stack_env.sh S: PostgreSQL on 55432 + 10 S) -> 20 + 4 S: four workers' stacks per S."""
    bases = [worker_stack_base({"STACK_PG_PORT": str(55432 + 10 * s)}) for s in range(5)]
    assert bases == [20, 24, 28, 32, 36]


def test_a_base_that_is_not_a_stack_number_is_refused_naming_the_variable() -> None:
    with pytest.raises(RuntimeError, match="PYTEST_STACK_BASE must be a stack number"):
        worker_stack_number({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_STACK_BASE": "twenty"})


def test_this_worker_runs_on_its_own_stack() -> None:
    """Under xdist, this process's environment points at the worker's stack (ports of scripts/stack_env.sh)."""
    number = worker_stack_number()
    if number is None or os.environ.get("PYTEST_WORKER_STACKS") == "off":
        pytest.skip("not an xdist worker on a stack of its own")
    assert os.environ["STACK_PG_PORT"] == str(55432 + 10 * number)
    assert os.environ["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{9092 + 10 * number}"
