"""Typed errors of the execution app. Each says what happened and what to do; none is raised after
anything was written (the service's transaction rolls back first).
"""

from core.errors import AegisError


class LedgerError(AegisError):
    """A ledger operation was refused; nothing was written."""


class InvalidInput(LedgerError):
    """An argument is malformed (qty, symbol, price, side, type)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class BrokerQtyRequired(LedgerError):
    """The last reconciliation found KIS holding a different qty of this position's symbol: a
    sell must know what KIS would let it sell before it is ordered. Raised before anything is
    written; the caller asks KIS (outside the row lock) and tries again with the figure."""

    def __init__(self, *, position_id: object, symbol: str) -> None:
        self.position_id = position_id
        self.symbol = symbol
        super().__init__(
            f"Position {position_id} ({symbol}) disagrees with KIS's holding; "
            f"pass KIS's orderable qty to order it."
        )


class PositionNotFound(LedgerError):
    def __init__(self, position_id: object) -> None:
        self.position_id = position_id
        super().__init__(f"Position {position_id} does not exist; check the id.")


class PositionClosed(LedgerError):
    def __init__(self, position_id: object) -> None:
        self.position_id = position_id
        super().__init__(
            f"Position {position_id} is closed; an exit needs an open position with shares."
        )


class InsufficientAvailableQty(LedgerError):
    """Nothing is left to sell: every share is held or already reserved by another exit."""

    def __init__(self, *, position_id: object, requested: int, qty: int, locked: int) -> None:
        self.position_id = position_id
        self.requested = requested
        self.qty = qty
        self.locked = locked
        super().__init__(
            f"Position {position_id}: {requested} requested but 0 available "
            f"(qty {qty}, locked {locked} by open sell orders and exit intents); "
            f"wait for those to fill or cancel them first."
        )


class TradingNotAllowed(LedgerError):
    """The global trading state forbids this operation."""

    def __init__(self, *, state: str, operation: str) -> None:
        self.state = state
        self.operation = operation
        hint = {
            "HALTED": "nothing new goes out until a person sets trading back to ACTIVE or "
            "REDUCING (or, at startup, until reconciliation with KIS has succeeded)",
            "REDUCING": "only exits go out until a person sets trading back to ACTIVE",
        }.get(state, "")
        super().__init__(f"Trading is {state}: {operation} refused; {hint}.")


class IntentNotFound(LedgerError):
    def __init__(self, intent_id: object) -> None:
        self.intent_id = intent_id
        super().__init__(f"Intent {intent_id} does not exist; check the id.")


class InvalidIntentState(LedgerError):
    def __init__(self, intent_id: object, status: str, operation: str) -> None:
        self.intent_id = intent_id
        self.status = status
        super().__init__(f"Intent {intent_id} is {status}; cannot {operation} it.")


class OrderNotFound(LedgerError):
    def __init__(self, order_id: object) -> None:
        self.order_id = order_id
        super().__init__(f"Order {order_id} does not exist; check the id.")


class InvalidOrderState(LedgerError):
    def __init__(self, order_id: object, status: str, operation: str) -> None:
        self.order_id = order_id
        self.status = status
        super().__init__(f"Order {order_id} is {status}; cannot {operation} it.")


class FillExceedsOrder(LedgerError):
    def __init__(self, *, order_id: object, fill_qty: int, remaining: int) -> None:
        self.order_id = order_id
        super().__init__(
            f"Order {order_id}: a fill of {fill_qty} exceeds its remaining {remaining}; "
            f"reconcile the order with the broker's daily fills."
        )
