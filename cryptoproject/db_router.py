"""Read-replica routing: the reads of dashboard pages and the REST API go to the ``replica`` database.

Installed only when ``DATABASE_REPLICA_URL`` is set. :class:`cryptoproject.middleware.ReplicaReadsMiddleware`
marks the requests whose reads may be served by the replica (GET/HEAD of a page or API URL, from a client that has
not written within ``DATABASE_REPLICA_PIN_SECONDS``) with :func:`replica_reads`; a context variable, so the mark
follows the request across the sync/async boundaries of an ASGI server and never leaks into another request, a
Celery task, a management command or the trades consumer, which all keep reading the primary.

Writes always go to the primary, and so do the reads of the framework's tables (sessions, users, tokens, login
lockouts, admin log, content types): a login or a logout must take effect on the very next request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

REPLICA = "replica"
# Apps whose reads stay on the primary even inside a routed request.
PRIMARY_ONLY_APPS = frozenset({"admin", "auth", "authtoken", "axes", "contenttypes", "sessions"})

_reads_on_replica: ContextVar[bool] = ContextVar("reads_on_replica", default=False)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Within the block, ORM reads of the project's own tables go to the replica."""
    token = _reads_on_replica.set(True)
    try:
        yield
    finally:
        _reads_on_replica.reset(token)


def reading_replica() -> bool:
    """Whether reads of this context go to the replica."""
    return _reads_on_replica.get()


def read_connection(model: type[Model]) -> BaseDatabaseWrapper:
    """The connection ORM reads of ``model`` use here: for raw-SQL reads that should follow the routing."""
    return connections[router.db_for_read(model)]


class ReplicaRouter:
    """``DATABASE_ROUTERS`` entry: replica reads inside :func:`replica_reads`, the primary for everything else."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        """The replica inside :func:`replica_reads` (not for :data:`PRIMARY_ONLY_APPS`), else None: the default."""
        if _reads_on_replica.get() and model._meta.app_label not in PRIMARY_ONLY_APPS:
            return REPLICA
        return None  # Django's default: the primary, or the database the hinted instance came from

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        """Always the primary, so an instance read from the replica is never saved there."""
        # Explicitly the primary: left to Django, saving an instance read from the replica would write there.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        """Allow relations between rows of the primary and the replica (one database); None for other aliases."""
        # Both aliases are the same database: a row read from the replica may point at one read from the primary.
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        """Never migrate the replica (it follows the primary's schema); None leaves other aliases to Django."""
        # The replica follows the primary's schema by streaming; it is read-only.
        return False if db == REPLICA else None
