"""Exchange ingestion: WebSocket adapters, the Kafka trade producer, gap backfill and the trade record."""
