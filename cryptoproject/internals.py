"""Presence checks for third-party private attributes (the ``*_internals`` modules use them to name what moved)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def has_path(obj: Any, path: str) -> bool:
    """Whether ``obj`` has the dotted attribute ``path`` (``"_accumulator._batches"``)."""
    for name in path.split("."):
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def missing_paths(obj: Any, paths: Iterable[str]) -> list[str]:
    """The ``paths`` ``obj`` lacks, as ``Class.path`` strings, in the order given."""
    return [f"{type(obj).__name__}.{path}" for path in paths if not has_path(obj, path)]
