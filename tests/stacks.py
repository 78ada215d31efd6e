"""One local stack per pytest-xdist worker, so that the suite runs on several workers without tests seeing each other:
worker ``gwN`` uses ``scripts/stack_env.sh`` stack ``PYTEST_STACK_BASE + N`` (default 20, 21, ...; a run on stack S,
20 + 4 S + N), its own Kafka, PostgreSQL and Redis. The fault tests (tests/faults.py) kill and freeze *this* stack's
servers, so sharing one stack between workers would break the other workers' tests.

:func:`use_worker_stack` runs from ``tests/settings.py``, before Django reads the settings (pytest-django sets
Django up while pytest loads its initial conftests, earlier than any conftest or ``pytest_configure`` hook could
act), and sets the worker's ``os.environ``: the settings and every child process a test starts (``manage.py``
commands, Celery workers, ``scripts/stack.sh up`` in the fault tests) see that stack alone. It starts the stack when
it is down (``scripts/stack.sh up`` is idempotent) and leaves it running after the run, like ``make services``, so
the next run starts at once and reuses its test database (``--reuse-db``); ``make services-down-workers`` stops
them.

Without xdist (``-n0``, or a plain ``pytest``), nothing changes: the suite uses the stack of the environment; nor
with ``PYTEST_WORKER_STACKS=off`` (``make check``: its tests need no server, and it starts none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, MutableMapping

from chaos.harness import stack_environment
from tests.faults import start_kafka

DEFAULT_BASE = 20
# Set once the worker's environment points at its stack: a second call (tests.settings imported again), or one in a
# child process the worker started, is a no-op.
MARKER = "PYTEST_WORKER_STACK"


def worker_stack_number(environ: Mapping[str, str] = os.environ) -> int | None:
    """The stack number of this xdist worker (``gwN`` -> base + N), or None outside a worker."""
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    match = re.fullmatch(r"gw(\d+)", worker)
    if match is None:
        return None
    # A crashed worker's replacement comes as gw<count>, gw<count + 1>, ...: it takes over the stack of the worker it
    # replaces (free now) rather than starting yet another one.
    count = int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    index = int(match.group(1))
    return worker_stack_base(environ) + (index % count if count else index)


def worker_stack_base(environ: Mapping[str, str] = os.environ) -> int:
    """The stack of worker gw0: ``PYTEST_STACK_BASE``, else 20 + 4 N for a run on stack N (``stack_env.sh N``).

    So two checkouts on stacks of their own (0 and 1, say) get workers' stacks of their own too (20-23, 24-27).
    """
    base = environ.get("PYTEST_STACK_BASE")
    if base is None:
        pg_port = int(environ.get("STACK_PG_PORT", "15432"))
        return DEFAULT_BASE + 4 * max(0, (pg_port - 15432) // 10)
    if not base.isdigit():
        raise RuntimeError(f"PYTEST_STACK_BASE must be a stack number (scripts/stack_env.sh N), got {base!r}")
    return int(base)


def use_worker_stack(
    environ: MutableMapping[str, str] = os.environ, start: Callable[[], None] = lambda: start_kafka(timeout=300)
) -> int | None:
    """Point this xdist worker at its own stack, started if down; returns its number (None outside xdist).

    Only the worker itself chooses: a process it started inherits ``PYTEST_XDIST_WORKER`` and the marker, and keeps
    the environment it was given. The chaos tests start their pipeline on stacks 11 and 12 of their own; had those
    children chosen again, they would have computed a worker stack from stack 12's ports (20 + 4 * 12 + N) and run
    there, on a stack nobody else looked at.
    """
    if environ.get("PYTEST_WORKER_STACKS") == "off":
        return None  # make check: the tests need no server, and none is started
    if MARKER in environ:
        return int(environ[MARKER])
    number = worker_stack_number(environ)
    if number is None:
        return None
    # The variables of scripts/stack_env.sh (ports, STACK_DIR, the application's URLs), one Kafka broker.
    environ.update(stack_environment(number))
    try:
        start()  # scripts/stack.sh up: starts whatever of the stack is down, waits until it answers
    except RuntimeError as exc:
        raise RuntimeError(f"pytest worker {environ['PYTEST_XDIST_WORKER']}, stack {number}: {exc}") from exc
    environ[MARKER] = str(number)
    return number
