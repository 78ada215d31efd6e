"""Benchmarks run by `make bench`, `make bench-ingest` and `make bench-latency`: they measure, tests assert."""
