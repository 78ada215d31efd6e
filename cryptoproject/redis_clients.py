"""The one way the project opens a Redis client: always with socket and connect timeouts.

Every blocking call of a worker loop must time out (a Redis that stops answering must not hang a consumer, a
health page or a task), so no client is made without them.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings

DEFAULT_TIMEOUT_SECONDS = 2.0


def redis_client(url: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> redis.Redis:
    """A new client for ``url`` (``REDIS_URL`` by default); the caller closes it."""
    return redis.Redis.from_url(url or settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


@lru_cache(maxsize=8)
def shared_redis_client(url: str) -> redis.Redis:
    """One client (and connection pool, which is thread-safe) per URL for the life of the process."""
    return redis_client(url)
