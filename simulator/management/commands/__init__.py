"""``record`` and ``simulate_exchange``."""
