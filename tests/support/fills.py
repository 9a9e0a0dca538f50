"""A position bought at KIS (the simulator) and synced, and an intent sent in this process: for
the tests of fills and of the end of the day."""

from execution import services
from execution.models import Order, Position
from execution.services.submission import Outcome, intent_submit
from execution.services.sync import orders_sync
from tests.support.ledger import key


def send(intent, broker):
    assert intent_submit(intent_id=intent.pk, broker=broker) is Outcome.SUBMITTED
    return Order.objects.get(intent=intent)


def held(kis_sim, broker, qty: int = 10) -> Position:
    """A position of `qty` 005930 bought at KIS (the simulator) and synced."""
    entry = services.entry_intent_open(symbol="005930", qty=qty, idempotency_key=key())
    send(entry, broker)
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})
    orders_sync(broker=broker)
    return Position.objects.get(pk=entry.position_id)
