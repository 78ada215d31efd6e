"""Management commands of the backtest app."""
