"""Historical imports from data.binance.vision (or a local mirror): download, verify, parse and store."""
