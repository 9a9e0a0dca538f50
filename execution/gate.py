"""The kill-switch rule, once: which orders the trading state lets out. Exits (SELL) go out in
ACTIVE and REDUCING, entries (BUY) only in ACTIVE, nothing in HALTED, which is also in force
while the startup gate waits for a reconciliation with KIS. `allows` for Python's checks
(services/trading_state.py's require_allowed), `allows_sql` inside a statement written as SQL
(the claim, the recorded order, the locked and guarded writes)."""

import functools

from .models import Side, TradingState

State = TradingState.State


@functools.cache
def trading_state_in_force_sql() -> str:
    """The trading state in force (trading_state_get's) as an SQL expression, for a statement
    written as SQL; NULL without the state's row."""
    return (
        f"(SELECT CASE WHEN t.reconcile_required_since IS NOT NULL"
        f" AND (t.reconciled_at IS NULL OR t.reconciled_at < t.reconcile_required_since)"
        f" THEN '{State.HALTED}' ELSE t.state END"
        f" FROM {TradingState._meta.db_table} t WHERE t.id = {TradingState.SINGLETON_PK:d})"
    )


def allows(state: str | None, side: str) -> bool:
    """The kill-switch rule: exits (SELL) go out in ACTIVE and REDUCING, entries (BUY) only in
    ACTIVE, nothing in HALTED (allows_sql: the same inside a statement)."""
    return state == State.ACTIVE or (state == State.REDUCING and side == Side.SELL)


def allows_sql(side: str) -> str:
    """require_allowed's rule as an SQL condition, for a statement written as SQL: the trading
    state in force lets an order of `side` (an SQL expression: a column, or 'SELL' / 'BUY'
    quoted) out. NULL, so false, without the state's row."""
    return (
        f"{trading_state_in_force_sql()} IN "
        f"('{State.ACTIVE}', CASE WHEN {side} = '{Side.SELL}' THEN '{State.REDUCING}' END)"
    )
