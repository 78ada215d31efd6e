"""REST API v1 (``/api/v1/``): market data, backtests and predictions, with an OpenAPI schema."""
