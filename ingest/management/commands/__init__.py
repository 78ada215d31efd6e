"""``create_topics``, ``ingest``, ``record`` and ``simulate_exchange``."""
