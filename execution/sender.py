"""Sending intents from the process that opened them: pricesync opens an exit on a trade and
sends its order from its own threads, with no queue hop between the commit and the broker call
(the hop costs 3–4 ms on this kind of machine, PERFORMANCE.md).

Exactly once holds as on the worker's path: the Order is recorded before the call and the send
claims it on its row right before the broker write (I4, execution/services/claim.py), so a late
duplicate delivery (the sweep, the listener) finds it taken. Whatever
this sender cannot do is handed to the execute task, which retries: a full backlog, a broker
that could not be reached, a database error. If the process dies with intents not yet sent,
they are NEW intents, and the sweep sends them.
"""

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, connection, connections

from core.rows import connection_lost

from .services.submission import intent_submit, order_send
from .tasks import intent_execute

logger = logging.getLogger("aegis.execution")


def send_now(intent_id: str, *, broker) -> None:
    """Send a committed intent's order from this thread; whatever fails here is handed to the
    execute task, which retries (and if even that cannot be enqueued, the sweep sends it)."""
    _sending(intent_id, lambda: intent_submit(intent_id=intent_id, broker=broker))


def send_recorded(order, *, broker, max_age_s: float | None = None) -> None:
    """Send an order recorded in its intent's own transaction (the doorbell's common case):
    straight to the broker call, which claims it. Failures go as send_now's do; the claim of a
    request that never left is given back first (order_send), so the task can send it.
    `max_age_s`: a queued payload's order is not sent when recorded longer ago than this."""
    _sending(str(order.intent_id), lambda: order_send(order, broker, max_age_s=max_age_s))


def _sending(intent_id: str, send) -> None:
    started = time.perf_counter()
    try:
        outcome = send()
        logger.info(
            "execution.sent_in_process intent_id=%s outcome=%s ms=%.2f",
            intent_id,
            outcome.value,
            (time.perf_counter() - started) * 1000,
            extra={"intent_id": intent_id},
        )
    except Exception as exc:  # noqa: BLE001 - the worker's task retries what failed here
        if isinstance(exc, DatabaseError) and connection_lost():
            connection.close()  # the next send reconnects; a live one is kept (a lock timeout)
        logger.warning(
            "execution.in_process_failed intent_id=%s: %s: %s: handed to the execute task",
            intent_id,
            type(exc).__name__,
            exc,
            extra={"intent_id": intent_id},
        )
        _hand_over(intent_id)


def _hand_over(intent_id: str) -> None:

    try:
        intent_execute.delay(intent_id)
    except Exception as exc:  # noqa: BLE001 - the sweep sends NEW intents
        logger.error(
            "execution.enqueue_failed intent_id=%s: %s: the sweep will send it",
            intent_id,
            exc,
            extra={"intent_id": intent_id},
        )


class _Ready:
    """A thread made ready for the next recorded order (InProcessSender.prepare)."""

    def __init__(self) -> None:
        self.order = None
        self.given = threading.Event()


class InProcessSender:
    """Callable with an intent id after its commit; True when it took the intent. `recorded`
    takes an order recorded in its intent's transaction the same way.

    `prepare` is said when an order is about to be recorded (its transaction is on its way): a
    thread of its own takes the KIS token, the breaker's state and a rate slot meanwhile
    (KisClient.preflight), then waits for the next recorded order and sends it without those
    round trips. An order no ready thread waits for goes to the lanes."""

    READY_WAIT_S = 0.5  # how long a ready thread waits for its order before it gives up

    def __init__(self, *, broker, lanes: int = 2, backlog: int = 64, ready: int = 2) -> None:
        self.broker = broker
        self.backlog = backlog
        # One thread per lane, each with its own database connection, closed on close().
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sender-{i}")
            for i in range(lanes)
        ]
        self._ready_pool = ThreadPoolExecutor(max_workers=ready, thread_name_prefix="sender-ready")
        self._ready_max = ready
        self._ready: list[_Ready] = []  # waiting for an order, oldest first
        self._preparing = 0
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False

    def __call__(self, intent_id: str) -> bool:
        return self._take(send_now, intent_id)

    def prepare(self) -> None:
        """A recorded order is on its way: make a thread ready for it, if one is free. It is
        waiting from now on, so the order goes to it even before its preflight is done."""
        with self._lock:
            if self._closed or self._preparing >= self._ready_max:
                return
            self._preparing += 1  # at most one job per thread: each starts at once
            ready = _Ready()
            self._ready.append(ready)
        self._ready_pool.submit(self._get_ready, ready)

    def _get_ready(self, ready: _Ready) -> None:
        try:
            self.broker.preflight("order")
            if not ready.given.wait(self.READY_WAIT_S):
                with self._lock:
                    if ready in self._ready:  # nobody gave it an order: give up
                        self._ready.remove(ready)
                        return
                ready.given.wait()  # given just now, under the lock
            if ready.order is not None:
                self._send(send_recorded, ready.order)
        finally:
            with self._lock:
                self._preparing -= 1

    def recorded(self, order) -> bool:
        with self._lock:
            ready = None
            if self._ready and not self._closed and self._pending < self.backlog:
                ready = self._ready.pop(0)
            if ready is not None:
                self._pending += 1
                ready.order = order
                ready.given.set()
        if ready is not None:
            return True
        return self._take(send_recorded, order)

    def _take(self, send, what) -> bool:
        with self._lock:
            if self._closed or self._pending >= self.backlog:
                return False
            self._pending += 1
        self._lanes[next(self._turn) % len(self._lanes)].submit(self._send, send, what)
        return True

    def _send(self, send, what) -> None:
        try:
            send(what, broker=self.broker)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        """Send what was taken, then close each lane's database connection."""
        with self._lock:
            self._closed = True
            waiting, self._ready = self._ready, []
        for ready in waiting:  # no order will come
            ready.given.set()
        # Each ready thread closes its own database connection: the barrier keeps each of
        # these jobs on a thread of its own.
        barrier = threading.Barrier(self._ready_max)

        def close_here() -> None:
            connections.close_all()
            barrier.wait(timeout=10)

        for _ in range(self._ready_max):
            self._ready_pool.submit(close_here)
        self._ready_pool.shutdown(wait=True)
        for lane in self._lanes:
            lane.submit(connections.close_all)
            lane.shutdown(wait=True)
