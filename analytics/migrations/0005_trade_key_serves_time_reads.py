# The natural key's index becomes (exchange, symbol, traded_at, trade_id) and the (exchange, symbol, traded_at) index
# goes: the same uniqueness (a unique key does not depend on its column order, and ON CONFLICT infers its arbiter
# from the set of columns), one B-tree fewer to keep up on every insert, and the remaining one serves every read of
# a symbol's trades by time, ordered by (traded_at, trade_id) as the candles, the stats and the API's keyset pages
# want them. Measured with make bench-scale (docs/BENCHMARKS.md).
#
# On an existing install the new unique index is built on every partition in this migration's transaction, while
# writes to the trades table wait: minutes for tens of millions of rows. Run it in a quiet hour.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0004_partition_trades"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="trade", name="trade_symbol_time"),
        migrations.RemoveConstraint(model_name="trade", name="trade_natural_key"),
        migrations.AddConstraint(
            model_name="trade",
            constraint=models.UniqueConstraint(
                fields=("exchange", "symbol", "traded_at", "trade_id"), name="trade_natural_key"
            ),
        ),
    ]
