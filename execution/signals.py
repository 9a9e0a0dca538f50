"""What the ledger announces to the apps above it.

`position_changed` (keyword `position`, the Position as it now stands): a position was
written, by the ORM (a save, a delete: forwarded here) or by one of the ledger's statements
written as SQL, which say so themselves. Trading forgets its cached copies once the
transaction commits (trading/signals.py)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from .models import Position

position_changed = Signal()


def announce(position: Position) -> None:
    """Say that `position` changed (a statement written as SQL wrote it)."""
    position_changed.send(sender=Position, position=position)


def _saved_or_deleted(sender, instance: Position, **kwargs) -> None:
    announce(instance)


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(_saved_or_deleted, sender=Position, dispatch_uid=f"position-{signal}")
