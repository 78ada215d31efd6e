"""Backtests: strategies simulated on stored candles, parameter sweeps, and the stored runs the dashboard shows."""
