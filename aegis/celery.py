"""The Celery app. Tasks subclass DjangoTask, so `delay_on_commit()` enqueues after commit (I5)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")

app = Celery("aegis", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Imported for its signal handlers: every task's queue wait and run time.
from . import task_timing  # noqa: E402,F401


@app.task(name="aegis.ping")
def ping() -> str:
    """Liveness probe for worker health checks."""
    return "pong"
