"""Structured logging: one JSON object per line on stderr, level from ``LOG_LEVEL``."""

from __future__ import annotations

from typing import Any


def logging_config(level: str, kafka_client_level: str = "CRITICAL") -> dict[str, Any]:
    """Return a ``LOGGING`` dict that writes JSON lines (python-json-logger) at ``level``.

    kafka-python logs every failed connection attempt as an ERROR; our own code reports what matters (an
    unreachable broker names its address), so the client's own records are quiet unless asked for.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "timestamp": False,
            },
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json"},
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "django": {"level": level, "propagate": True},
            "kafka": {"level": kafka_client_level, "propagate": True},
            "celery": {"level": level, "propagate": True},
        },
    }
