"""The trader's events as notices: a fill, an exit decided, a refused pick. Each is None, at the
cost of reading the settings, when no channel wants its kind."""

import datetime as dt
import math

from django.conf import settings

from core import clock

from ..models import Fill, Order, OrderIntent, Position, Side
from . import texts
from .outbox import EXIT, FILL, REFUSALS, Notice, record, wants


def fill_record(*, order: Order, fill: Fill, position: Position) -> None:
    """Tell of `fill` of `order` (its intent read along with it: `order.intent` costs no
    query), in the caller's transaction."""
    to = wants(FILL)
    if not to:
        return
    intent = order.intent if order.intent_id is not None else None
    net = None
    if order.side == Side.SELL and fill.realized_pnl is not None:
        net = fill.realized_pnl - fill.fee - fill.tax
    record(
        Notice(
            kind=FILL,
            key=f"fill:{fill.broker_fill_key}",
            channels=to,
            text=texts.fill(
                symbol=position.symbol,
                side=order.side,
                qty=fill.qty,
                price=fill.price,
                amount=fill.amount,
                at=fill.filled_at,
                intent_type=intent.intent_type if intent is not None else None,
                reason=intent.reason if intent is not None else "",
                order_filled=order.filled_qty,
                order_qty=order.qty,
                net_pnl=net,
            ),
        )
    )


def exit_notice(intent: OrderIntent) -> Notice | None:
    """The notice of the exit `intent` about to be written (by the ledger's one statement, which
    writes the notice's rows beside it: outbox.cte)."""
    to = wants(EXIT)
    if not to:
        return None
    return Notice(
        kind=EXIT,
        key=f"exit:{intent.id}",
        channels=to,
        text=texts.exit_decided(
            symbol=intent.symbol,
            intent_type=intent.intent_type,
            qty=intent.qty,
            reason=intent.reason,
            limit_price=intent.limit_price,
            venue=intent.venue,
            at=intent.event_at,
        ),
    )


def refusal_record(*, pick_id: int, gate: str, reason: str, at: dt.datetime | None = None) -> None:
    """Tell of a refused pick, in the caller's transaction: sent summed up with the others of
    its period (AEGIS_NOTIFY_REFUSALS_EVERY_S), once the period is over. `gate` names the gate
    ("gate 2 risk")."""
    to = wants(REFUSALS)
    if not to:
        return
    at = at or clock.now()
    every = settings.NOTIFY["REFUSALS_EVERY_S"]
    period_end = math.floor(at.timestamp() / every) * every + every
    record(
        Notice(
            kind=REFUSALS,
            key=f"refusal:{pick_id}",
            channels=to,
            text=texts.refusal(gate=gate, reason=reason),
            due=dt.datetime.fromtimestamp(period_end, dt.UTC),
        )
    )
