"""The Celery application: configured from Django settings under the ``CELERY_`` namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")

app = Celery("cryptoproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="cryptoproject.ping", ignore_result=False, acks_late=False)
def ping(token: str) -> dict[str, object]:
    """Answer with the token and the worker's pid: proves a real worker process ran it (health checks, tests)."""
    return {"token": token, "pid": os.getpid()}
