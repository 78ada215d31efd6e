# Whale alerts filtered by (exchange, symbol), newest first: an index range instead of a walk of the time index.
# CONCURRENTLY: the alert table is written by the pipeline while this runs, and a plain CREATE INDEX would block it.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("analytics", "0002_candle_source"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="whalealert",
            index=models.Index(fields=["exchange", "symbol", "traded_at"], name="whale_symbol_time"),
        ),
    ]
