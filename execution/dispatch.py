"""Who sends an intent once the transaction that opened it commits: one choice per process.

- A process that sends its own orders installs its sender when it starts (`install`):
  pricesync (the exits it opens on a trade), the picks router's worker (the entries it routes),
  the demo. Such a sender takes an intent id, and may take an order recorded in the intent's
  own transaction (`recorded`) and get ready for it (`prepare`): execution/sender.py.
- Any other process hands the intent to the execution worker: its doorbell lanes when one
  listens (execution/doorbell.py), else the execute task.

Whatever a taker refuses goes to the execute task; what cannot be enqueued, the sweep sends.
Execution's AppConfig sets this module as the ledger's handoff (services/handoff.py)."""

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import transaction

from . import doorbell
from .services.handoff import Takers
from .tasks import intent_execute

_installed: Any = None


def install(sender: Any) -> None:
    """This process's sender from now on (None: the execution worker's, again)."""
    global _installed
    _installed = sender


@contextlib.contextmanager
def installed(sender: Any) -> Iterator[None]:
    """`sender` installed for the block, the previous one restored after it."""
    before = _installed
    install(sender)
    try:
        yield
    finally:
        install(before)


def takers() -> Takers:
    """This process's sender when one is installed; else the execution worker's doorbell when
    a lane listens; else nobody (the execute task)."""
    if _installed is not None:
        return _installed, getattr(_installed, "recorded", None)
    if doorbell.listening():
        return doorbell.ring, doorbell.ring_recorded
    return None, None


def on_commit(intent_id: str, takers: Takers, order: Any) -> None:
    """Once committed, hand the intent (or its recorded `order`) to its taker, else to the
    execute task. `robust`: a broker outage at commit time is logged, not raised; the intent is
    safe in the database and the sweep of NEW intents (or the settle of orders in flight)
    sends it later."""
    take_id, take_recorded = takers
    if order is None:
        transaction.on_commit(
            lambda: (take_id is not None and take_id(intent_id)) or intent_execute.delay(intent_id),
            robust=True,
        )
        return

    def hand_over() -> None:
        if take_recorded is None or not take_recorded(order):
            intent_execute.delay(intent_id)

    transaction.on_commit(hand_over, robust=True)
