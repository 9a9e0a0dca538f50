"""Execution tasks: thin; each loads what it needs by id and calls one service."""

from celery import shared_task

from .brokers import get_broker
from .services.submission import NOT_SENT, intent_submit


@shared_task(
    name="execution.intent_execute",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=NOT_SENT,
    retry_backoff=0.5,
    retry_backoff_max=10,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=30,
    time_limit=60,
)
def intent_execute(intent_id: str) -> str:
    """Turn a NEW intent into a broker order, exactly once, however often it is delivered."""
    return intent_submit(intent_id=intent_id, broker=get_broker()).value
