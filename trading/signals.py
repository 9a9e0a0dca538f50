"""What trading does on the ledger's and its own models' news.

Cache invalidation: whatever changes a position, its exit state or a profile (services, the
admin, fills) forgets the cached copies once its transaction commits (trading/hot.py). A best
price's or a special day's change is the market's (market/signals.py).

An automatic exit KIS refused pauses its position's exits (services.exit_refused)."""

from django.db.models.signals import post_delete, post_save

from execution.models import Order, Position
from execution.signals import order_refused, position_changed

from . import hot
from .models import ExitProfile, PositionExitState, TakeProfitTier
from .services import exit_refused


def _position_changed(sender, position: Position, **kwargs) -> None:
    hot.positions_changed([position.symbol])


def _exit_state_changed(sender, instance: PositionExitState, **kwargs) -> None:
    position = instance._state.fields_cache.get("position")
    if position is None:
        position = Position.objects.filter(pk=instance.position_id).only("symbol").first()
    hot.positions_changed([position.symbol] if position is not None else [])


def _profile_changed(sender, **kwargs) -> None:
    hot.profiles_changed()


def _order_refused(sender, order: Order, reason: str, **kwargs) -> None:
    exit_refused(order=order, reason=reason)


def connect() -> None:
    position_changed.connect(_position_changed, dispatch_uid="hot-position")
    order_refused.connect(_order_refused, dispatch_uid="exit-refused")
    for signal in (post_save, post_delete):
        signal.connect(
            _exit_state_changed, sender=PositionExitState, dispatch_uid=f"hot-exit-state-{signal}"
        )
        for model in (ExitProfile, TakeProfitTier):
            signal.connect(
                _profile_changed, sender=model, dispatch_uid=f"hot-{model.__name__}-{signal}"
            )
