"""A local exchange for the demo, the tests and the benchmarks: Binance, Coinbase and Kraken WebSocket
protocols and the REST trade endpoints gap backfill reads (Binance ``historicalTrades``, Coinbase Exchange
``/products/{id}/trades``, Kraken ``/0/public/Trades``) replaying real recorded trades or synthetic ones, with fault
injection. ``manage.py simulate_exchange`` runs it; :class:`BackgroundSimulator` runs it in-process."""

from ingest.simulator.config import ConfigError, SimulatorConfig
from ingest.simulator.server import BackgroundSimulator, Simulator

__all__ = ["BackgroundSimulator", "ConfigError", "Simulator", "SimulatorConfig"]
