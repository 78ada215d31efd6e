"""``backtest``."""
