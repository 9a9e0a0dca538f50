"""Every write to the ledger goes through these functions (HackSoft styleguide: services)."""

from ..gate import trading_state_in_force_sql
from .fills import fill_apply
from .intents import (
    Insert,
    Plus,
    Ref,
    Seen,
    Update,
    entry_intent_open,
    entry_open_if,
    exit_intent_open,
    exit_intent_open_locked,
    exit_open_if,
    intent_cancel,
)
from .orders import order_mark_cancelled, order_mark_submitted, order_open, order_reject
from .positions import position_flatten
from .trading_state import (
    market_closed_at,
    trading_state_get,
    trading_state_set,
)

__all__ = [
    "Insert",
    "Plus",
    "Ref",
    "Seen",
    "Update",
    "entry_intent_open",
    "entry_open_if",
    "exit_intent_open",
    "exit_intent_open_locked",
    "exit_open_if",
    "fill_apply",
    "intent_cancel",
    "order_mark_cancelled",
    "order_mark_submitted",
    "order_open",
    "order_reject",
    "position_flatten",
    "market_closed_at",
    "trading_state_get",
    "trading_state_in_force_sql",
    "trading_state_set",
]
