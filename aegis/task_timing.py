"""How long each task waited in its queue and how long it ran, for every task, in one place.

The publisher stamps the message with the wall-clock time; the worker reads it back before the
task starts. Both are logged on completion as `task.timing` with the task's name and id.
"""

import logging
import time

from celery.signals import before_task_publish, task_postrun, task_prerun

from core.metrics import TASK_QUEUE_WAIT

logger = logging.getLogger("aegis.tasks")

PUBLISHED_AT_HEADER = "aegis_published_at"


@before_task_publish.connect
def _stamp_published_at(headers=None, **_):
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


@task_prerun.connect
def _start_timer(task=None, **_):
    if task is None:
        return
    started = time.time()
    published = getattr(task.request, PUBLISHED_AT_HEADER, None)
    task.request.aegis_started_at = started
    task.request.aegis_queue_wait_ms = (
        (started - float(published)) * 1000.0 if published is not None else None
    )


@task_postrun.connect
def _log_timing(task=None, task_id=None, state=None, **_):
    if task is None:
        return
    started = getattr(task.request, "aegis_started_at", None)
    if started is None:
        return
    run_ms = (time.time() - started) * 1000.0
    wait_ms = getattr(task.request, "aegis_queue_wait_ms", None)
    if wait_ms is not None:
        TASK_QUEUE_WAIT.labels(task.name).observe(max(0.0, wait_ms / 1000.0))
    logger.info(
        "task.timing name=%s id=%s state=%s queue_wait_ms=%s run_ms=%.3f",
        task.name,
        task_id,
        state,
        "n/a" if wait_ms is None else f"{wait_ms:.3f}",
        run_ms,
        extra={
            "task_name": task.name,
            "task_id": task_id,
            "queue_wait_ms": wait_ms,
            "run_ms": run_ms,
        },
    )
