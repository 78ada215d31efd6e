"""A local exchange for the demo, the tests and the benchmarks: Binance, Coinbase and Kraken WebSocket
protocols (and Binance REST ``historicalTrades``) replaying real recorded trades or synthetic ones, with fault
injection. ``manage.py simulate_exchange`` runs it; :class:`BackgroundSimulator` runs it in-process."""

from ingest.simulator.config import ConfigError, SimulatorConfig
from ingest.simulator.server import BackgroundSimulator, Simulator

__all__ = ["BackgroundSimulator", "ConfigError", "Simulator", "SimulatorConfig"]
