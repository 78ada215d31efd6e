"""The Celery application: configured from Django settings under the ``CELERY_`` namespace."""

import os

from celery import Celery
from celery.schedules import crontab
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")

app = Celery("cryptoproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The project's queues, declared so workers, `purge` and monitoring know all of them (routes: CELERY_TASK_ROUTES).
app.conf.task_queues = (Queue("default"), Queue("analytics"), Queue("alerts"))

# Periodic jobs (run `celery -A cryptoproject beat`). `expires` drops runs that waited longer than their period
# (workers down), so a backlog of identical idempotent jobs never piles up.
app.conf.beat_schedule = {
    "analytics-apply-retention": {
        "task": "analytics.tasks.apply_retention",
        "schedule": crontab(minute="7"),
        "options": {"expires": 3000},
    },
    "dashboard-requeue-pending-deliveries": {
        "task": "dashboard.tasks.requeue_pending_deliveries",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "analytics-refresh-all-stats": {
        "task": "analytics.tasks.refresh_all_stats",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
}


@app.task(name="cryptoproject.ping", ignore_result=False, acks_late=False)
def ping(token: str) -> dict[str, object]:
    """Answer with the token and the worker's pid: proves a real worker process ran it (health checks, tests)."""
    return {"token": token, "pid": os.getpid()}
