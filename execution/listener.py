"""LISTEN new_intent on a direct PostgreSQL connection and enqueue every announced intent.

LISTEN needs a session, so this never goes through PgBouncer's transaction pooling: it uses
DATABASE_DIRECT_URL. A lost connection is re-established with backoff; intents announced while
it was down are picked up by the beat sweep of NEW intents, never lost.
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from celery import current_app
from django.conf import settings

logger = logging.getLogger("aegis.listener")

CHANNEL = "new_intent"
EXECUTE_TASK = "execution.intent_execute"


def enqueue_execute(intent_id: str) -> None:
    current_app.send_task(EXECUTE_TASK, args=[intent_id])


def parse(payload: str) -> str | None:
    """The intent id of a notification payload, or None when the payload is malformed."""
    try:
        return str(uuid.UUID(str(json.loads(payload)["intent_id"])))
    except (ValueError, KeyError, TypeError):
        return None


def listen(
    *,
    stop: threading.Event,
    on_intent: Callable[[str], None] = enqueue_execute,
    dsn: str | None = None,
    on_ready: Callable[[], None] = lambda: None,
    reconnect_max_s: float = 5.0,
) -> None:
    dsn = dsn or settings.DATABASE_DIRECT_URL
    if not dsn:
        raise RuntimeError("listen_intents needs PostgreSQL: set DATABASE_DIRECT_URL.")
    delay = 0.2
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True, application_name="aegis-listener") as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                logger.info("listener.ready channel=%s", CHANNEL)
                on_ready()
                delay = 0.2
                while not stop.is_set():
                    for notify in conn.notifies(timeout=1.0):
                        intent_id = parse(notify.payload)
                        if intent_id is None:
                            logger.warning("listener.malformed payload=%r", notify.payload[:200])
                            continue
                        on_intent(intent_id)
                        logger.info(
                            "listener.enqueued intent_id=%s",
                            intent_id,
                            extra={"intent_id": intent_id},
                        )
        except psycopg.OperationalError as exc:
            logger.warning(
                "listener.disconnected error=%s; reconnecting in %.1f s", type(exc).__name__, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, reconnect_max_s)
