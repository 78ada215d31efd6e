"""``import_history`` and ``serve_archive``."""
