"""Argument types shared by the management commands (argparse names them in its errors)."""

from __future__ import annotations


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    """A number above 0."""
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value
