"""Settings for the test suite: the project's settings in local-development mode, explicitly.

``DJANGO_DEBUG`` defaults to false (production), so the suite sets it, before the settings are read. It goes into
``os.environ``, so the child processes the tests start (workers, commands) run in the same mode. No dotenv file is
read (``DOTENV_FILE`` empty): the suite sees the environment alone. Under pytest-xdist, each worker first points
that environment at a stack of its own (:mod:`tests.stacks`).
"""

import os
from urllib.parse import quote

from tests.stacks import use_worker_stack

os.environ.setdefault("DJANGO_DEBUG", "true")
# No dotenv file: the developer's .env (make setup) must not change what the suite, or a child that checks the
# production defaults with DJANGO_DEBUG unset, sees. Children inherit it through os.environ too.
os.environ["DOTENV_FILE"] = ""

# Under pytest-xdist each worker runs on a stack of its own (tests/stacks.py); this module is the first of the
# project that pytest-django imports, so the worker's environment is set here, before the settings read it.
use_worker_stack()

from cryptoproject.settings import *  # noqa: E402, F403
from cryptoproject.settings import DATABASE_URL, DATABASES, replica_config  # noqa: E402

# Production requires DATABASE_URL (no development fallback): the children that check production settings with
# DJANGO_DEBUG unset inherit the database this suite resolved (CI sets none and uses the default stack's).
os.environ.setdefault("DATABASE_URL", DATABASE_URL)

# django-axes refuses authenticate() calls without a request, which Django's test client.login() makes; the
# lockout tests switch it on (AXES_ENABLED is read per request).
AXES_ENABLED = False

# The stack's streaming replica of the test server (scripts/stack.sh up postgres-replica: the primary's port + 1, or
# TEST_DATABASE_REPLICA_URL), as the "replica" alias settings.py makes of DATABASE_REPLICA_URL: a test mirror of
# "default" that sees the test database by streaming. Nothing is routed to it here (no router, no middleware): most
# tests write inside a transaction the replica never sees. tests/dashboard/test_replica.py switches the routing on.
_primary = DATABASES["default"]
DATABASES["replica"] = replica_config(
    os.environ.get("TEST_DATABASE_REPLICA_URL")
    or f"postgres://{quote(str(_primary['USER']), safe='')}:{quote(str(_primary['PASSWORD']), safe='')}"
    f"@{_primary['HOST']}:{int(_primary['PORT']) + 1}/{_primary['NAME']}"
)
