from aegis import clock

from ..exceptions import InvalidInput, TradingNotAllowed
from ..models import TradingState

State = TradingState.State


def trading_state_get() -> str:
    """The current global trading state (ACTIVE, REDUCING or HALTED)."""
    state = TradingState.objects.filter(pk=TradingState.SINGLETON_PK).values_list(
        "state", flat=True
    ).first()
    if state is None:
        state = TradingState.objects.get_or_create(pk=TradingState.SINGLETON_PK)[0].state
    return state


def trading_state_set(*, state: str, reason: str, changed_by: str) -> TradingState:
    if state not in State.values:
        raise InvalidInput("state", f"must be one of {', '.join(State.values)}, got {state!r}.")
    if not reason or not reason.strip():
        raise InvalidInput("reason", "say why the trading state changes.")
    row, _ = TradingState.objects.update_or_create(
        pk=TradingState.SINGLETON_PK,
        defaults={
            "state": state,
            "reason": reason.strip()[:255],
            "changed_by": changed_by[:150],
            "changed_at": clock.now(),
        },
    )
    return row


def require_state_allows(*, side: str, operation: str) -> None:
    """Exits (SELL) go out in ACTIVE and REDUCING; entries (BUY) only in ACTIVE."""
    state = trading_state_get()
    if state == State.HALTED or (state == State.REDUCING and side != "SELL"):
        raise TradingNotAllowed(state=state, operation=operation)
