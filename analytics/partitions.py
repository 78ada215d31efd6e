"""The trades table's time partitions: created ahead, caught by a default partition, dropped whole by retention.

``analytics_trade`` is range-partitioned on ``traded_at`` in periods of ``TRADE_PARTITION_DAYS`` days (aligned on
the Unix epoch's day count, so every process computes the same bounds). The beat task :func:`maintain` (and
``consume_trades`` at start, and the migration that made the table) creates the partitions from yesterday to
``TRADE_PARTITIONS_AHEAD`` days ahead; the history import creates the ones of the days it imports.

Every function works on the database of the connection alias ``using`` (the default one unless told): a migration
passes the alias it migrates (``migrate --database``), a benchmark its second database.

A trade outside every partition (far past, far future, a day no one created) lands in the default partition
``analytics_trade_default``: stored, never lost, and counted on the health page. When the partition of its day is
created later, the rows of that day move out of the default partition with it, in the same transaction.

Why a beat task rather than pg_partman (Debian's ``postgresql-15-partman``): the extension is not in the
``postgres:15`` image docker-compose uses nor on managed PostgreSQL services everywhere, and what it would do here
(create a day ahead, drop a day behind) is a few statements the project can test on the real server.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from cryptoproject.timeutil import EPOCH

logger = logging.getLogger(__name__)

PARENT = "analytics_trade"
DEFAULT = "analytics_trade_default"
# Every column of the parent but generated ones (quote_quantity), in table order: what moving rows between partitions
# copies. Read from the catalog, not written out: a migration that runs this code (0004) sees the table of its own
# day, and a column added later (trade_ref) is moved too.
_COLUMNS = """
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
    WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
"""


@dataclass(frozen=True)
class Table:
    """A table range-partitioned on ``column`` the way the trades table is (other apps' tables reuse this module:
    the order books' series, ``books/partitions.py``). Names are code constants, never input."""

    parent: str
    column: str

    @property
    def default(self) -> str:
        """The default partition's name."""
        return f"{self.parent}_default"


#: the trades table, every function's default
TRADES = Table(PARENT, "traded_at")
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
# DDL on the parent waits for the consumer's open transaction; past this it gives up and tries again next run
# rather than queueing every insert behind its lock.
_LOCK_TIMEOUT = "5s"


def period_days() -> int:
    """The length of one partition in days (``TRADE_PARTITION_DAYS``)."""
    return int(settings.TRADE_PARTITION_DAYS)


def period_start(moment: datetime, days: int | None = None) -> datetime:
    """The start of the partition period holding ``moment``."""
    days = period_days() if days is None else days
    day = (moment.astimezone(UTC) - EPOCH).days
    return EPOCH + timedelta(days=day - day % days)


def partition_name(start: datetime, table: Table = TRADES) -> str:
    """``analytics_trade_pYYYYMMDD``: the partition of ``table`` starting at ``start``."""
    return f"{table.parent}_p{start:%Y%m%d}"


@dataclass(frozen=True)
class Partition:
    """One attached partition and its range ``[start, end)``."""

    name: str
    start: datetime
    end: datetime


def partitions(using: str = DEFAULT_DB_ALIAS, table: Table = TRADES) -> list[Partition]:
    """The range partitions of ``table`` (the trades) in database ``using``, oldest first (the default partition is
    not among them)."""
    with connections[using].cursor() as cur:
        cur.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass
            """,
            [table.parent],
        )
        rows = cur.fetchall()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match is None:
            continue  # DEFAULT
        start, end = (datetime.fromisoformat(v).astimezone(UTC) for v in match.groups())
        found.append(Partition(name, start, end))
    return sorted(found, key=lambda p: p.start)


def ensure_partitions(
    first: datetime, last: datetime, using: str = DEFAULT_DB_ALIAS, table: Table = TRADES
) -> list[str]:
    """Create the missing partitions of every period touching ``first..last`` in database ``using``; return the
    names created.

    Rows of a new partition's range already in the default partition move into it in the same transaction, so
    the partition can be created at all (PostgreSQL refuses a range the default partition holds rows of) and no
    row is ever outside the table while it happens.
    """
    if last < first:
        raise ValueError(f"last {last} is before first {first}")
    days = period_days()
    existing = {p.start for p in partitions(using, table)}
    created = []
    start = period_start(first, days)
    while start <= last:
        if start not in existing and _create(start, start + timedelta(days=days), using, table):
            created.append(partition_name(start, table))
        start += timedelta(days=days)
    return created


def _create(start: datetime, end: datetime, using: str, table: Table) -> bool:
    name = partition_name(start, table)
    parent, default, column = table.parent, table.default, table.column
    # The bounds are datetimes this module computed, never input: safe to write into the DDL (which takes no
    # parameters).
    lo, hi = start.isoformat(), end.isoformat()
    with transaction.atomic(using=using), connections[using].cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{parent} partitions"])
        cur.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        cur.execute("SELECT to_regclass(%s)", [name])
        if cur.fetchone()[0] is not None:
            return False  # another process made it while this one waited for the lock
        cur.execute(_COLUMNS, [parent])
        (columns,) = cur.fetchone()
        cur.execute(
            f"""
            CREATE TEMP TABLE {parent}_moving ON COMMIT DROP AS
            WITH moved AS (
                DELETE FROM {default} WHERE {column} >= %s AND {column} < %s RETURNING {columns}
            )
            SELECT * FROM moved
            """,
            [start, end],
        )
        moved = cur.rowcount
        cur.execute(f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM ('{lo}') TO ('{hi}')")
        if moved:
            cur.execute(f"INSERT INTO {parent} ({columns}) SELECT {columns} FROM {parent}_moving")
        # Dropped now, not at commit: inside an outer transaction (a migration) the next partition makes another.
        cur.execute(f"DROP TABLE {parent}_moving")
    logger.info("partition created", extra={"partition": name, "start": lo, "end": hi, "moved": moved})
    return True


@dataclass(frozen=True)
class Maintenance:
    """What one :func:`maintain` run did."""

    created: list[str]
    default_rows: int


def maintain(now: datetime | None = None, using: str = DEFAULT_DB_ALIAS, table: Table = TRADES) -> Maintenance:
    """Create the partitions of ``table`` from yesterday to ``TRADE_PARTITIONS_AHEAD`` days ahead in database
    ``using``; count its default rows. A migration passes its ``schema_editor.connection.alias``: the database it
    migrates."""
    now = now or timezone.now()
    ahead = now + timedelta(days=int(settings.TRADE_PARTITIONS_AHEAD))
    created = ensure_partitions(now - timedelta(days=1), ahead, using, table)
    rows = default_rows(using, table)
    if rows:
        logger.warning("rows outside every partition", extra={"partition": table.default, "rows": rows})
    return Maintenance(created, rows)


def default_rows(using: str = DEFAULT_DB_ALIAS, table: Table = TRADES) -> int:
    """Rows in the default partition of ``table`` in database ``using``: outside every range partition (stored, but
    worth knowing about)."""
    with connections[using].cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table.default}")
        return int(cur.fetchone()[0])


def drop_before(cutoff: datetime, using: str = DEFAULT_DB_ALIAS, table: Table = TRADES) -> list[str]:
    """Detach and drop every partition of database ``using`` that ends at or before ``cutoff`` (whole periods: no
    row-by-row DELETE); return the names dropped. A partition its lock cannot be had for within the timeout waits
    for the next run."""
    dropped = []
    for part in partitions(using, table):
        if part.end > cutoff:
            break
        with transaction.atomic(using=using), connections[using].cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
            cur.execute(f"ALTER TABLE {table.parent} DETACH PARTITION {part.name}")
            cur.execute(f"DROP TABLE {part.name}")
        dropped.append(part.name)
        logger.info("partition dropped", extra={"partition": part.name, "end": part.end.isoformat()})
    return dropped
