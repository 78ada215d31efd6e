"""``replay_books``."""
