"""Fault injection on the real stack (``make chaos``): see :mod:`chaos.harness` and docs/RELIABILITY.md."""
