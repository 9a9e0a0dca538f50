"""The Celery app. Tasks subclass DjangoTask, so `delay_on_commit()` enqueues after commit (I5)."""

import os

from celery import Celery
from celery.signals import (
    beat_init,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from django.db import close_old_connections

from core.memory import freeze_startup_objects
from core.metrics import ops_server_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")

app = Celery("aegis", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(task=None, **_):
    """Django's request-cycle rule for worker tasks: drop connections that are broken or older
    than CONN_MAX_AGE, and health-check the rest on first use (CONN_HEALTH_CHECKS). Celery's own
    close-everything is switched off by DB_REUSE_MAX (settings). Never inside an eager task: it
    runs in its caller's transaction."""
    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()


@worker_ready.connect
def _serve_metrics(sender=None, **_):
    """/metrics and /health on AEGIS_OPS_PORT, when set (core/metrics.py)."""
    ops_server_start("worker")


@beat_init.connect
def _serve_beat_health(sender=None, **_):
    """Beat's /health (and /metrics) on AEGIS_OPS_PORT, when set: compose's healthcheck."""
    ops_server_start("beat")


@worker_ready.connect
def _start_doorbell_lanes(sender=None, **_):
    """A worker on a thread pool listens on the doorbell of each queue it consumes that has
    one, each bell on lanes (threads) of its own: the execution bell (execution/doorbell.py)
    and the picks router's (picks/doorbell.py), so that a flood of picks never takes the
    threads that send exits."""
    from execution.doorbell import EXECUTION, start_for_worker
    from picks import doorbell as picks_doorbell

    start_for_worker(sender, {"execution": EXECUTION})
    if picks_doorbell.start_for_worker(sender) is not None:
        picks_doorbell.market_lanes_warm()


@worker_ready.connect
def _freeze_startup_objects(sender=None, **_):
    """The worker's start-up objects out of the collector's full passes (core/memory.py):
    after the lanes started, before the first task. A prefork pool's children freeze their
    own as they start (below)."""
    freeze_startup_objects("worker")


@worker_process_init.connect
def _freeze_child_startup_objects(**_):
    freeze_startup_objects("worker-child")


@worker_shutdown.connect
def _stop_doorbell_lanes(**_):
    from execution.doorbell import stop_for_worker
    from picks import doorbell as picks_doorbell

    picks_doorbell.stop_for_worker()
    stop_for_worker()


# Imported for its signal handlers: every task's queue wait and run time.
from . import task_timing  # noqa: E402,F401


@app.task(name="aegis.ping")
def ping() -> str:
    """Liveness probe for worker health checks."""
    return "pong"
