"""The trades table's partitions on real PostgreSQL: made ahead, the default partition catching (and giving back)
trades outside them, idempotent stores across partitions, and the migration of an existing unpartitioned table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from analytics import partitions
from analytics.models import Trade
from analytics.storage import store_trades
from analytics.timeutil import ms_to_datetime
from dashboard.health import trade_storage
from ingest.records import TradeRecord, trade_key

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def _where(trade_id: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text FROM analytics_trade WHERE trade_id = %s", [trade_id])
        return str(cur.fetchone()[0])


def _record(trade_id: int, at: datetime) -> TradeRecord:
    ms = int(at.timestamp() * 1000)
    return TradeRecord("binance", "BTCUSDT", trade_id, "60000.5", "0.25", False, ms, ms, ms)


@pytest.mark.django_db
def test_maintain_makes_yesterday_to_the_days_ahead_once(settings):
    settings.TRADE_PARTITION_DAYS = 1
    settings.TRADE_PARTITIONS_AHEAD = 3
    done = partitions.maintain(NOW)
    assert done.created == [f"analytics_trade_p202603{d:02d}" for d in range(9, 14)]  # 03-09 .. 03-13
    assert partitions.maintain(NOW).created == []  # idempotent
    made = {p.name: (p.start, p.end) for p in partitions.partitions()}
    assert made["analytics_trade_p20260310"] == (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))


@pytest.mark.django_db
def test_periods_of_several_days_align_on_the_epoch(settings):
    settings.TRADE_PARTITION_DAYS = 7
    created = partitions.ensure_partitions(NOW, NOW)
    start = partitions.period_start(NOW)
    assert created == [partitions.partition_name(start)]
    assert (start - datetime(1970, 1, 1, tzinfo=UTC)).days % 7 == 0
    assert start <= NOW < start + timedelta(days=7)
    with pytest.raises(ValueError, match="before"):
        partitions.ensure_partitions(NOW, NOW - timedelta(days=1))


@pytest.mark.django_db
def test_a_trade_outside_every_partition_is_kept_counted_and_moved_when_its_partition_comes(settings):
    settings.TRADE_PARTITION_DAYS = 1
    partitions.ensure_partitions(NOW, NOW)
    far = datetime(2031, 7, 1, 12, tzinfo=UTC)  # no partition that far ahead
    assert store_trades([_record(1, NOW), _record(2, far)]).inserted == 2
    assert _where(1) == "analytics_trade_p20260310"
    assert _where(2) == "analytics_trade_default"
    assert partitions.default_rows() == 1
    assert trade_storage()["default_rows"] == 1
    # A replay of both (same natural key, same times) stores nothing more, wherever they live.
    assert store_trades([_record(1, NOW), _record(2, far)]).inserted == 0
    assert partitions.ensure_partitions(far, far) == ["analytics_trade_p20310701"]
    assert _where(2) == "analytics_trade_p20310701"
    assert partitions.default_rows() == 0
    assert store_trades([_record(2, far)]).inserted == 0  # still found by the natural key in its new partition
    assert Trade.objects.count() == 2
    stored = Trade.objects.get(trade_id=2)
    assert (stored.price, stored.quantity, stored.quote_quantity) == (
        Decimal("60000.5"),
        Decimal("0.25"),
        Decimal("15000.125"),
    )


def _store_before_0006(records: list[TradeRecord]) -> int:
    """``store_trades`` as it was before migration 0006 (no ``trade_ref``): the schema these tests migrate back to."""
    inserted = 0
    with connection.cursor() as cur:
        for r in records:
            times = [ms_to_datetime(r.trade_time), ms_to_datetime(r.received_at)]
            cur.execute(
                "INSERT INTO analytics_trade (exchange, symbol, trade_id, price, quantity, is_buyer_maker, traded_at,"
                " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (exchange, symbol, trade_id, traded_at) DO NOTHING",
                [r.exchange, r.symbol, r.trade_id, r.price, r.quantity, r.is_buyer_maker, *times],
            )
            inserted += cur.rowcount
    return inserted


@pytest.mark.django_db(transaction=True)
def test_migration_moves_an_existing_table_into_partitions_and_back():
    """An install with the unpartitioned table (migration 0003) and trades in it: 0004 keeps every row, its id and
    values, in partitions of their days, and the id sequence goes on after them; 0004 backwards restores it."""
    executor = MigrationExecutor(connection)
    before, after = [("analytics", "0003_whale_symbol_time")], [("analytics", "0004_partition_trades")]
    executor.migrate(before)
    try:
        times = [datetime(2025, 5, 1, 10, tzinfo=UTC), datetime(2025, 5, 3, 23, 59, tzinfo=UTC)]
        with connection.cursor() as cur:
            cur.execute("SELECT to_regclass('analytics_trade_default')")
            assert cur.fetchone()[0] is None  # really the old table
            for n, at in enumerate(times, start=1):
                cur.execute(
                    "INSERT INTO analytics_trade (id, exchange, symbol, trade_id, price, quantity, is_buyer_maker,"
                    " traded_at, received_at) VALUES (%s, 'binance', 'BTCUSDT', %s, '100.5', '2', true, %s, %s)",
                    [500 + n, n, at, at],
                )
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
        rows = list(Trade.objects.order_by("id").values_list("id", "trade_id", "price", "quote_quantity", "traded_at"))
        assert rows == [
            (501, 1, Decimal("100.5"), Decimal("201"), times[0]),
            (502, 2, Decimal("100.5"), Decimal("201"), times[1]),
        ]
        assert (_where(1), _where(2)) == ("analytics_trade_p20250501", "analytics_trade_p20250503")
        assert partitions.default_rows() == 0
        _store_before_0006([_record(3, times[1])])
        assert Trade.objects.values_list("id", flat=True).get(trade_id=3) > 502
        # Backwards: one plain table again, every row kept.
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(before)
        with connection.cursor() as cur:
            cur.execute("SELECT count(*), to_regclass('analytics_trade_default') FROM analytics_trade")
            assert cur.fetchone() == (3, None)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


SECOND = "second"  # a connection alias added for one test, as benchmarks/scale.py adds its reference database


def _admin(statement: str) -> None:
    """Run ``statement`` (CREATE/DROP DATABASE: outside any transaction) on the test server's ``postgres`` database."""
    own = connection.settings_dict
    with psycopg.connect(
        host=own["HOST"],
        port=own["PORT"],
        user=own["USER"],
        password=own["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(statement)


@pytest.fixture(scope="module")
def second_database(django_db_setup: None) -> Iterator[str]:
    """A fresh, empty database on the test server as the connection alias :data:`SECOND`, dropped afterwards.

    Module-scoped so that the alias exists before pytest-django sets up the test that lists it in ``databases``;
    after ``django_db_setup``, so that the test databases' set-up never sees (nor renames) it."""
    name = f"{connection.settings_dict['NAME']}_second"
    _admin(f'DROP DATABASE IF EXISTS "{name}"')
    _admin(f'CREATE DATABASE "{name}"')
    connections.settings[SECOND] = dict(connections.settings["default"], NAME=name)
    try:
        yield SECOND
    finally:
        connections[SECOND].close()
        del connections[SECOND]
        del connections.settings[SECOND]
        _admin(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.mark.django_db(transaction=True, databases=["default", SECOND])
def test_migrate_of_a_second_database_partitions_its_own_trades_table(second_database, settings):
    """``migrate --database`` of a fresh second database, from zero to the latest migration: 0004's partition
    upkeep runs on the database being migrated (not the default one), so its trades table has the partitions from
    yesterday on and a trade of today lands in today's; the default database gains no partition."""
    settings.TRADE_PARTITION_DAYS = 1
    default_before = partitions.partitions()
    call_command("migrate", database=second_database, verbosity=0, interactive=False)
    now = timezone.now()
    assert store_trades([_record(1, now)], using=second_database).inserted == 1
    with connections[second_database].cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text FROM analytics_trade WHERE trade_id = 1")
        assert cur.fetchone()[0] == partitions.partition_name(partitions.period_start(now))
    made = {p.name for p in partitions.partitions(using=second_database)}
    assert partitions.partition_name(partitions.period_start(now - timedelta(days=1))) in made
    assert partitions.default_rows(using=second_database) == 0
    assert partitions.partitions() == default_before


def _trade_indexes() -> dict[str, str]:
    """The trades table's own indexes (the partitioned parent's): name -> definition."""
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'analytics_trade'")
        return dict(cur.fetchall())


@pytest.mark.django_db(transaction=True)
def test_migration_0005_keys_trades_by_time_and_drops_the_second_btree():
    """0005 orders the natural key's index (exchange, symbol, traded_at, trade_id) and drops the (exchange, symbol,
    traded_at) index: stored trades stay, a replay is still refused by the key, and backwards restores both."""
    executor = MigrationExecutor(connection)
    before, after = [("analytics", "0004_partition_trades")], [("analytics", "0005_trade_key_serves_time_reads")]
    at = datetime(2024, 2, 29, 12, tzinfo=UTC)  # a day of its own: its partition is dropped afterwards
    executor.migrate(before)
    try:
        assert "trade_symbol_time" in _trade_indexes()
        assert "(exchange, symbol, trade_id, traded_at)" in _trade_indexes()["trade_natural_key"]
        partitions.ensure_partitions(at, at)
        assert _store_before_0006([_record(1, at), _record(2, at)]) == 2
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
        indexes = _trade_indexes()
        assert "trade_symbol_time" not in indexes
        assert "UNIQUE" in indexes["trade_natural_key"]
        assert "(exchange, symbol, traded_at, trade_id)" in indexes["trade_natural_key"]
        assert _store_before_0006([_record(1, at), _record(2, at), _record(3, at)]) == 1
        assert sorted(Trade.objects.values_list("trade_id", flat=True)) == [1, 2, 3]
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(before)
        indexes = _trade_indexes()
        assert "(exchange, symbol, traded_at)" in indexes["trade_symbol_time"]
        assert "(exchange, symbol, trade_id, traded_at)" in indexes["trade_natural_key"]
        assert _store_before_0006([_record(3, at)]) == 0
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        with connection.cursor() as cur:  # a transactional test's DDL stays: leave no partition to the next tests
            cur.execute("DROP TABLE IF EXISTS analytics_trade_p20240229")


@pytest.mark.django_db
def test_a_trade_moved_out_of_the_default_partition_keeps_its_trade_ref(settings):
    settings.TRADE_PARTITION_DAYS = 1
    far = datetime(2031, 8, 1, 12, tzinfo=UTC)  # no partition yet: the row lands in the default one
    ref = "d9cd8295-40dc-5dce-8deb-42882580a7ab"
    key = trade_key(ref)
    assert store_trades([_record(key, far)._replace(exchange="bybit", trade_ref=ref)]).inserted == 1
    assert partitions.ensure_partitions(far, far) == ["analytics_trade_p20310801"]
    assert _where(key) == "analytics_trade_p20310801"
    assert Trade.objects.get(trade_id=key).trade_ref == ref
