"""Test tooling above ingest: a local exchange, the replay of recorded trades and the recorder of real markets.

The simulator serves every registered exchange's WebSocket protocol (``simulator/<name>.py``, found by name) and
the REST trade endpoints gap backfill reads (Binance ``historicalTrades``, Coinbase Exchange
``/products/{id}/trades``, Kraken ``/0/public/Trades``), replaying real recorded trades (:mod:`simulator.replay`) or
synthetic ones, with fault injection, for the demo, the tests and the benchmarks. ``manage.py simulate_exchange``
runs it; :class:`simulator.server.BackgroundSimulator` runs it in-process; ``manage.py record`` captures a real
market (:mod:`simulator.recorder`). It imports ingest (records, parsers, client); ingest never imports it.
"""
