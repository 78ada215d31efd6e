"""Stream processing: the Kafka trade consumer, candles, indicators, 24h stats, whale alerts and live pushes."""
