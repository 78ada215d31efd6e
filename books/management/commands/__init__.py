"""``consume_books`` and ``replay_books``."""
