"""What the ledger announces to the apps above it.

`position_changed` (keyword `position`, the Position as it now stands): a position was
written, by the ORM (a save, a delete: forwarded here) or by one of the ledger's statements
written as SQL, which say so themselves. Trading forgets its cached copies once the
transaction commits (trading/signals.py).

`order_refused` (keywords `order`, the Order now REJECTED, and `reason`): KIS refused an order
for another reason than the market's hours (those hold the exit engine until the next phase,
trading_state.market_closed_refused), once the rejection is committed. Trading pauses the
exits of a position whose automatic exit it was (trading/signals.py)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from .models import Order, Position

position_changed = Signal()
order_refused = Signal()


def announce(position: Position) -> None:
    """Say that `position` changed (a statement written as SQL wrote it)."""
    position_changed.send(sender=Position, position=position)


def refused(order: Order, reason: str) -> None:
    """Say that KIS refused `order` (rejected in the ledger) for `reason`."""
    order_refused.send(sender=Order, order=order, reason=reason)


def _saved_or_deleted(sender, instance: Position, **kwargs) -> None:
    announce(instance)


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(_saved_or_deleted, sender=Position, dispatch_uid=f"position-{signal}")
