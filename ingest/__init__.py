"""Exchange ingestion: WebSocket adapters, the Kafka trade producer, gap backfill, recording and the simulator."""
