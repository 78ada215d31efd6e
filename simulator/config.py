"""Settings of one simulator run (what ``manage.py simulate_exchange`` parses), validated at construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.exchanges import names

#: the exchanges the simulator serves: every registered one (``simulator/<name>.py`` each)
EXCHANGES = names()


class ConfigError(ValueError):
    """A simulator setting that cannot work; the message names the option."""


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated exchange behaves. Times are seconds; 0 disables an optional limit."""

    exchange: str = "binance"
    host: str = "127.0.0.1"
    port: int = 0
    speed: float = 1.0
    max_rate: float = 0.0
    loop: bool = False
    drop_every: int = 0
    gap_every: int = 0
    malformed_rate: float = 0.0
    seed: int = 0
    start_delay: float = 0.0
    # Binance: ping every 20 s, disconnect after 60 s without a pong, 24 h lifetime, 5 incoming messages/s.
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 60.0
    lifetime: float = 24 * 3600.0
    max_incoming_per_s: int = 5
    # Coinbase batches updates about every 250 ms; at speed 0 frames hold at most ``batch_size`` trades.
    batch_interval: float = 0.25
    batch_size: int = 100
    heartbeat_interval: float = 1.0
    snapshot_size: int = 50
    store_size: int = 1_000_000
    # How far back REST reaches: the newest N trades per symbol (0: everything stored), so a gap older than
    # that is unrecoverable. REST requests per second (token bucket; None: the exchange's public limit, 0: none).
    rest_history: int = 0
    rest_rate: float | None = None
    chunk_size: int = 512
    # Send every fill as its own trade, where the exchange aggregates a taker order's fills (OKX since 2023; its
    # feed before that, and what a check counting trades one by one needs).
    single_fills: bool = False
    symbols: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.exchange not in EXCHANGES:
            raise ConfigError(f"--exchange must be one of {', '.join(EXCHANGES)}, got {self.exchange!r}")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        if self.speed < 0:
            raise ConfigError(f"--speed must be >= 0, got {self.speed}")
        if self.max_rate < 0:
            raise ConfigError(f"--max-rate must be >= 0, got {self.max_rate}")
        for name in (
            "drop_every",
            "gap_every",
            "store_size",
            "chunk_size",
            "batch_size",
            "max_incoming_per_s",
            "rest_history",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.rest_rate is not None and self.rest_rate < 0:
            raise ConfigError(f"--rest-rate must be >= 0, got {self.rest_rate}")
        if not 0.0 <= self.malformed_rate <= 1.0:
            raise ConfigError(f"--malformed-rate must be within [0, 1], got {self.malformed_rate}")
        if self.start_delay < 0:
            raise ConfigError(f"--start-delay must be >= 0, got {self.start_delay}")
        if self.gap_every == 1:
            raise ConfigError("--gap-every must be at least 2 (1 would skip every trade)")
