"""The router's account read (picks.routing.account_read) on PostgreSQL: every figure the risk
gate decides on, from the ledger's rows, in one statement."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from core import clock
from execution.models import Fill, Order, OrderIntent, Position, Reconciliation
from market.models import BestPrice
from picks.routing import account_read

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=clock.SEOUL)


def _position(symbol: str, qty: int, avg: int, reserved: int = 0, status="OPEN") -> Position:
    return Position.objects.create(
        symbol=symbol, qty=qty, reserved_qty=reserved, avg_price=avg, status=status, opened_at=NOW
    )


def _intent(
    position: Position, side: str, qty: int, limit: int | None, status="NEW"
) -> OrderIntent:
    return OrderIntent.objects.create(
        intent_type="ENTRY" if side == "BUY" else "MANUAL",
        side=side,
        position=position,
        symbol=position.symbol,
        qty=qty,
        limit_price=limit,
        status=status,
        idempotency_key=str(uuid.uuid4()),
        event_at=NOW,
        created_at=NOW,
    )


def _order(
    position: Position, side: str, qty: int, limit: int | None, status: str, filled: int = 0
) -> Order:
    intent = _intent(position, side, qty, limit, status="ORDERED")
    return Order.objects.create(
        intent=intent,
        position=position,
        symbol=position.symbol,
        side=side,
        qty=qty,
        filled_qty=filled,
        limit_price=limit,
        status=status,
        created_at=NOW,
    )


def _fill(order: Order, amount: int, at: dt.datetime, pnl: str | None = None) -> None:
    Fill.objects.create(
        order=order,
        broker_fill_key=str(uuid.uuid4()),
        qty=1,
        price=amount,
        amount=amount,
        realized_pnl=None if pnl is None else Decimal(pnl),
        filled_at=at,
        recorded_at=at,
    )


def test_every_figure_of_the_account(db):
    samsung = _position("005930", 10, 70_000)  # its SELL intent below reserves 4 (P0 trigger)
    hynix = _position("000660", 5, 200_000)
    _position("035420", 0, 0, status="CLOSED")  # closed: not counted
    empty = _position("051910", 0, 0)  # an entry being bought
    BestPrice.objects.create(symbol="051910", price=400_000, source="REST", event_at=NOW)
    _intent(empty, "BUY", 2, None)  # NEW, no limit: valued at the best price, 800,000
    _intent(samsung, "BUY", 1, 71_000)  # NEW BUY in the asked symbol: 71,000
    _intent(samsung, "SELL", 4, 72_000)  # a sell is not an entry
    _intent(hynix, "BUY", 9, 1_000, status="CANCELLED")  # not pending
    _order(samsung, "BUY", 3, 70_500, "PARTIAL_FILLED", filled=1)  # 2 × 70,500 pending
    sold = _order(hynix, "SELL", 1, None, "FILLED", filled=1)
    bought = _order(empty, "BUY", 1, 1_000, "FILLED", filled=1)
    Reconciliation.objects.create(
        trigger="MANUAL",
        result="MATCHED",
        cash_krw=50_000_000,
        started_at=NOW - dt.timedelta(hours=1),
        finished_at=NOW - dt.timedelta(minutes=59),
    )
    _fill(sold, 300, NOW - dt.timedelta(days=1), pnl="-9999")  # yesterday's loss, before the run
    _fill(sold, 200_000, NOW - dt.timedelta(minutes=10), pnl="-1500.50")  # after the run
    _fill(sold, 7, NOW - dt.timedelta(minutes=59, seconds=30))  # sold during the run: not
    _fill(bought, 1_000, NOW - dt.timedelta(minutes=59, seconds=30))  # bought during: counts

    account = account_read("005930", trading_state="ACTIVE", now=NOW)

    pending = 800_000 + 71_000 + 2 * 70_500
    assert account.trading_state == "ACTIVE"
    assert account.open_positions == 3
    assert (account.symbol_held_qty, account.symbol_available_qty) == (10, 6)
    assert account.symbol_entry_pending
    assert account.symbol_exposure_krw == 10 * 70_000 + 71_000 + 2 * 70_500
    assert account.total_exposure_krw == 10 * 70_000 + 5 * 200_000 + pending
    assert account.realized_today_krw == Decimal("-1500.50")
    assert account.cash_krw == 50_000_000 - 1_000 + 200_000 - pending


def test_before_any_reconciliation_the_cash_is_unknown(db):
    _position("005930", 1, 70_000)
    account = account_read("000660", trading_state="REDUCING", now=NOW)
    assert account.cash_krw is None
    assert (account.open_positions, account.symbol_held_qty) == (1, 0)
    assert not account.symbol_entry_pending
    assert account.realized_today_krw == 0
