"""Typed errors of the execution app. Each says what happened and what to do; none is raised after
anything was written (the service's transaction rolls back first).

Each keeps its text in English (`str()`: logs, reasons stored on rows, the API) and, for a person
reading it in the admin, `translated()`: the same in the active language. Nothing is translated
when one is raised: a refusal on the order path costs no catalogue lookup.
"""

from django.utils.translation import gettext, gettext_noop, pgettext

from core.errors import AegisError


class LedgerError(AegisError):
    """A ledger operation was refused; nothing was written."""

    def __init__(self, template: str = "", **params: object) -> None:
        # `template`: English, with %(name)s placeholders when `params` are given.
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)

    def translated(self) -> str:
        """The message in the active language (a person's, in the admin)."""
        text = gettext(self.template) if self.template else str(self)
        return text % self._translated_params() if self.params else text

    def _translated_params(self) -> dict[str, object]:
        return self.params


class InvalidInput(LedgerError):
    """An argument is malformed (qty, symbol, price, side, type). `message` may be a template
    (marked with gettext_noop) whose %(name)s placeholders `params` fill."""

    def __init__(self, field: str, message: str, **params: object) -> None:
        self.field = field
        super().__init__(message, **params)
        self.args = (f"{field}: {self.args[0]}",)

    def translated(self) -> str:
        return f"{self.field}: {super().translated()}"


class BrokerQtyRequired(LedgerError):
    """The last reconciliation found KIS holding a different qty of this position's symbol: a
    sell must know what KIS would let it sell before it is ordered. Raised before anything is
    written; the caller asks KIS (outside the row lock) and tries again with the figure."""

    def __init__(self, *, position_id: object, symbol: str) -> None:
        self.position_id = position_id
        self.symbol = symbol
        super().__init__(
            gettext_noop(
                "Position %(position_id)s (%(symbol)s) disagrees with KIS's holding; "
                "pass KIS's orderable qty to order it."
            ),
            position_id=position_id,
            symbol=symbol,
        )


class PositionNotFound(LedgerError):
    def __init__(self, position_id: object) -> None:
        self.position_id = position_id
        super().__init__(
            gettext_noop("Position %(position_id)s does not exist; check the id."),
            position_id=position_id,
        )


class PositionClosed(LedgerError):
    def __init__(self, position_id: object) -> None:
        self.position_id = position_id
        super().__init__(
            gettext_noop(
                "Position %(position_id)s is closed; an exit needs an open position with shares."
            ),
            position_id=position_id,
        )


class InsufficientAvailableQty(LedgerError):
    """Nothing is left to sell: every share is held or already reserved by another exit."""

    def __init__(self, *, position_id: object, requested: int, qty: int, locked: int) -> None:
        self.position_id = position_id
        self.requested = requested
        self.qty = qty
        self.locked = locked
        super().__init__(
            gettext_noop(
                "Position %(position_id)s: %(requested)s requested but 0 available "
                "(qty %(qty)s, locked %(locked)s by open sell orders and exit intents); "
                "wait for those to fill or cancel them first."
            ),
            position_id=position_id,
            requested=requested,
            qty=qty,
            locked=locked,
        )


# What a refused operation is called in another language: the callers name it in English.
def _operation(operation: str) -> str:
    names = {
        "opening an exit": pgettext("refused operation", "opening an exit"),
        "opening an entry": pgettext("refused operation", "opening an entry"),
        "cancel": pgettext("refused operation", "cancel"),
        "cancel at KIS": pgettext("refused operation", "cancel at KIS"),
        "order": pgettext("refused operation", "order"),
        "apply a fill to": pgettext("refused operation", "apply a fill to"),
        "mark submitted": pgettext("refused operation", "mark submitted"),
    }
    if operation in names:
        return names[operation]
    if operation.startswith("sending "):
        return pgettext("refused operation", "sending %(intent_type)s") % {
            "intent_type": operation.removeprefix("sending ")
        }
    return operation


class TradingNotAllowed(LedgerError):
    """The global trading state forbids this operation."""

    def __init__(self, *, state: str, operation: str) -> None:
        self.state = state
        self.operation = operation
        template = {
            "HALTED": gettext_noop(
                "Trading is %(state)s: %(operation)s refused; nothing new goes out until a "
                "person sets trading back to ACTIVE or REDUCING (or, at startup, until "
                "reconciliation with KIS has succeeded)."
            ),
            "REDUCING": gettext_noop(
                "Trading is %(state)s: %(operation)s refused; only exits go out until a person "
                "sets trading back to ACTIVE."
            ),
        }.get(state, gettext_noop("Trading is %(state)s: %(operation)s refused; ."))
        super().__init__(template, state=state, operation=operation)

    def _translated_params(self) -> dict[str, object]:
        return {**self.params, "operation": _operation(self.operation)}


class IntentNotFound(LedgerError):
    def __init__(self, intent_id: object) -> None:
        self.intent_id = intent_id
        super().__init__(
            gettext_noop("Intent %(intent_id)s does not exist; check the id."), intent_id=intent_id
        )


class InvalidIntentState(LedgerError):
    def __init__(self, intent_id: object, status: str, operation: str) -> None:
        self.intent_id = intent_id
        self.status = status
        self.operation = operation
        super().__init__(
            gettext_noop("Intent %(intent_id)s is %(status)s; cannot %(operation)s it."),
            intent_id=intent_id,
            status=status,
            operation=operation,
        )

    def _translated_params(self) -> dict[str, object]:
        return {**self.params, "operation": _operation(self.operation)}


class OrderNotFound(LedgerError):
    def __init__(self, order_id: object) -> None:
        self.order_id = order_id
        super().__init__(
            gettext_noop("Order %(order_id)s does not exist; check the id."), order_id=order_id
        )


class InvalidOrderState(LedgerError):
    """`trade_date`: the order is of another trading day than today's (KIS cancels today's
    orders only)."""

    def __init__(
        self, order_id: object, status: str, operation: str, *, trade_date: object = None
    ) -> None:
        self.order_id = order_id
        self.status = status
        self.operation = operation
        params: dict[str, object] = {
            "order_id": order_id,
            "status": status,
            "operation": operation,
        }
        if trade_date is None:
            template = gettext_noop("Order %(order_id)s is %(status)s; cannot %(operation)s it.")
        else:
            template = gettext_noop(
                "Order %(order_id)s is %(status)s of %(trade_date)s; cannot %(operation)s it."
            )
            params["trade_date"] = trade_date
        super().__init__(template, **params)

    def _translated_params(self) -> dict[str, object]:
        return {**self.params, "operation": _operation(self.operation)}


class FillExceedsOrder(LedgerError):
    def __init__(self, *, order_id: object, fill_qty: int, remaining: int) -> None:
        self.order_id = order_id
        super().__init__(
            gettext_noop(
                "Order %(order_id)s: a fill of %(fill_qty)s exceeds its remaining "
                "%(remaining)s; reconcile the order with the broker's daily fills."
            ),
            order_id=order_id,
            fill_qty=fill_qty,
            remaining=remaining,
        )
