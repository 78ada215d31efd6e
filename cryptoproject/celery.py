"""The Celery application: configured from Django settings under the ``CELERY_`` namespace."""

import os
import sys

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_init
from kombu import Queue

from cryptoproject.queues import CeleryQueue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")

app = Celery("cryptoproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The project's queues, declared so workers, `purge` and monitoring know all of them (routes: CELERY_TASK_ROUTES).
# ``ml`` (training, inference) has its own workers: a retraining holds a process for minutes.
app.conf.task_queues = tuple(Queue(queue.value) for queue in CeleryQueue)

# Periodic jobs (run `celery -A cryptoproject beat`). `expires` drops runs that waited longer than their period
# (workers down), so a backlog of identical idempotent jobs never piles up.
app.conf.beat_schedule = {
    "analytics-apply-retention": {
        "task": "analytics.tasks.apply_retention",
        "schedule": crontab(minute="7"),
        "options": {"expires": 3000},
    },
    "analytics-maintain-partitions": {
        "task": "analytics.tasks.maintain_partitions",
        "schedule": crontab(minute="3"),
        "options": {"expires": 3000},
    },
    # The order books' series (docs/BOOKS.md, "Storage"): partitioned and retained like the trades.
    "books-maintain-partitions": {
        "task": "books.tasks.maintain_partitions",
        "schedule": crontab(minute="4"),
        "options": {"expires": 3000},
    },
    "books-apply-retention": {
        "task": "books.tasks.apply_retention",
        "schedule": crontab(minute="8"),
        "options": {"expires": 3000},
    },
    # The outbox sender (docs/ALERTS.md): retries, expired leases and any firing whose kick was lost.
    "notifications-send-due": {
        "task": "notifications.tasks.send_due",
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    # Sent and dead deliveries older than NOTIFICATIONS_DELIVERY_RETENTION_DAYS (docs/ALERTS.md).
    "notifications-purge-deliveries": {
        "task": "notifications.tasks.purge_deliveries",
        "schedule": crontab(minute="17"),
        "options": {"expires": 3000},
    },
    "analytics-refresh-all-stats": {
        "task": "analytics.tasks.refresh_all_stats",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
}


def retrain_schedule(cron: str) -> crontab | None:
    """PREDICTION_RETRAIN_CRON ("minute hour day-of-month month day-of-week", UTC) as a crontab; empty: none."""
    fields = cron.split()
    if not fields:
        return None
    if len(fields) != 5:
        raise ValueError(f"PREDICTION_RETRAIN_CRON: expected 5 crontab fields, got {cron!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(minute, hour, day_of_week, day_of_month, month_of_year)


@app.on_after_configure.connect
def _add_retraining(sender: Celery, **_kwargs: object) -> None:
    # Once Celery has read its configuration, not at import: this module is imported while the Django settings
    # module itself is being imported (cryptoproject/__init__.py), so reading a setting here would be circular.
    from django.conf import settings

    schedule = retrain_schedule(settings.PREDICTION_RETRAIN_CRON)
    if schedule is not None:
        sender.conf.beat_schedule["prediction-retrain"] = {
            "task": "prediction.tasks.retrain_all",
            "schedule": schedule,
            "options": {"expires": 3600},
        }


@app.task(name="cryptoproject.ping", ignore_result=False, acks_late=False)
def ping(token: str) -> dict[str, object]:
    """Answer with the token and the worker's pid: proves a real worker process ran it (health checks, tests)."""
    return {"token": token, "pid": os.getpid()}


@worker_init.connect
def _refuse_misconfiguration(**_kwargs: object) -> None:
    # A worker whose broker refuses its TLS or password would retry for ever, logging the same error; a setting to
    # fix stops it at start with one line naming the setting (an outage is still waited out).
    from cryptoproject.preflight import worker_misconfiguration

    problem = worker_misconfiguration()
    if problem:
        sys.stderr.write(f"celery worker: {problem}\n")
        sys.stderr.flush()
        raise SystemExit(1)
