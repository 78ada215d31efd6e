"""``consume_trades``."""
