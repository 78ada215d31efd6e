"""A JSON serializer for Django's Redis cache: a value read from Redis is data, never code.

Django's ``RedisSerializer`` pickles, so anyone who can write to Redis (a shared instance, a leaked password, the
SSRF the webhook guard exists against) could make every web process run code of their choice by writing a key it
reads. The project caches counters and throttle histories only (ints, lists of floats), which JSON carries; a value
JSON cannot carry fails loudly at ``set``, and a value that is not JSON fails at ``get`` with
:class:`UnreadableCacheValueError` instead of running.
"""

from __future__ import annotations

import json
from typing import Any


class UnreadableCacheValueError(ValueError):
    """A cache entry that is not JSON (written by someone else, or pickled by an earlier release)."""


class JSONSerializer:
    """``OPTIONS["serializer"]`` of ``django.core.cache.backends.redis.RedisCache``: JSON, integers left raw.

    Integers stay plain Redis integers, as in Django's serializer, so that ``incr``/``decr`` remain atomic.
    """

    def dumps(self, obj: Any) -> bytes | int:
        """``obj`` as JSON bytes (a plain ``int`` as itself); ``TypeError`` for what JSON cannot carry."""
        if type(obj) is int:  # not bool, which JSON keeps as true/false
            return obj
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        """The value of ``data``; :class:`UnreadableCacheValueError` when it is neither an integer nor JSON."""
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnreadableCacheValueError(f"cache value is not JSON ({type(exc).__name__})") from exc
