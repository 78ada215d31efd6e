"""``consume_books``."""
