"""``create_topics`` and ``ingest``."""
