"""Reconciliation reads KIS strictly and reports KIS's orders the ledger does not know. Real
PostgreSQL; KIS's answers given as raw pages read by the real client's parsing."""

from types import SimpleNamespace

import pytest

from core import clock
from execution import services
from execution.models import Alert, Order, Position, Reconciliation, ReconciliationMismatch
from execution.services.reconciliation import reconciliation_run
from execution.services.trading_state import reconciliation_require
from kis import protocol
from kis.client import KisClient
from tests.support.ledger import key, open_position

pytestmark = pytest.mark.django_db(transaction=True)


class PagesBroker(KisClient):
    """KIS as raw pages: the holdings, and today's daily orders."""

    config = SimpleNamespace(flavour=protocol.Flavour.REAL)  # a real account: every venue

    def __init__(self, *, holdings: list[dict], orders: list[dict]):
        self.holdings, self.orders = holdings, orders

    def _account(self):
        return {}

    def _pages(self, *, path, **_):
        if path == protocol.PATH_BALANCE:
            yield {"output1": self.holdings, "output2": [{"prvs_rcdl_excc_amt": "1000000"}]}
        else:
            yield {"output1": self.orders}


def holding(symbol: str, qty: int, **fields) -> dict:
    return {
        "pdno": symbol,
        "prdt_name": symbol,
        "hldg_qty": str(qty),
        "ord_psbl_qty": str(qty),
        "pchs_avg_pric": "10000.0000",
        "prpr": "10000",
    } | fields


def kis_order(
    odno: str,
    symbol: str,
    *,
    qty: int = 3,
    orgn_odno: str = "",
    side: str = "02",
    ord_tmd: str = "101500",
) -> dict:
    return {
        "ord_dt": f"{clock.now_seoul():%Y%m%d}",
        "ord_gno_brno": "06010",
        "odno": odno,
        "orgn_odno": orgn_odno,
        "sll_buy_dvsn_cd": side,
        "pdno": symbol,
        "ord_qty": str(qty),
        "ord_unpr": "10000",
        "ord_tmd": ord_tmd,
        "tot_ccld_qty": str(qty),
        "avg_prvs": "10000",
        "tot_ccld_amt": str(qty * 10_000),
        "rmn_qty": "0",
        "cncl_yn": "N",
        "rjct_qty": "0",
        "ord_dvsn_cd": "00",
    }


def ours(position: Position) -> Order:
    return Order.objects.filter(position=position).get()


@pytest.mark.parametrize(
    "bad",
    [
        lambda h: {k: v for k, v in h.items() if k != "hldg_qty"},
        lambda h: h | {"hldg_qty": ""},
        lambda h: h | {"hldg_qty": "Infinity"},
        lambda h: h | {"hldg_qty": "1E+5000000"},
        lambda h: h | {"hldg_qty": "9.5"},
        lambda h: h | {"hldg_qty": "-10"},
    ],
)
def test_a_bad_holding_fails_the_run_and_changes_nothing(new_symbol, bad):
    position = open_position(new_symbol(), 10)
    reconciliation_require()
    broker = PagesBroker(holdings=[bad(holding(position.symbol, 10))], orders=[])

    run = reconciliation_run(broker=broker, trigger="STARTUP")

    assert run.result == "FAILED" and "hldg_qty" in run.error
    assert not ReconciliationMismatch.objects.exists()
    assert Position.objects.get(pk=position.pk).broker_qty is None
    assert services.trading_state_get() == "HALTED"  # the startup gate stays closed
    assert not Alert.objects.filter(kind=Alert.Kind.RECONCILIATION).exists()


def test_orders_at_kis_unknown_to_the_ledger_are_reported(new_symbol):
    position = open_position(new_symbol(), 3)
    odno = ours(position).broker_order_no
    mts_symbol = new_symbol()
    orders = [
        kis_order(odno, position.symbol),
        kis_order("0900000001", position.symbol, orgn_odno=odno),  # a revision of ours
        kis_order("0900000002", position.symbol, orgn_odno="0900000001"),  # its cancel
        kis_order("0900000003", mts_symbol, qty=7, side="01", ord_tmd="093000"),
    ]
    broker = PagesBroker(holdings=[holding(position.symbol, 3)], orders=orders)

    run = reconciliation_run(broker=broker)

    assert run.result == "MISMATCH" and not run.mismatches.exists()
    assert run.unknown_orders == [
        {"odno": "0900000003", "symbol": mts_symbol, "side": "SELL", "qty": 7, "ord_tmd": "093000"}
    ]
    [alert] = Alert.objects.filter(kind=Alert.Kind.RECONCILIATION)
    assert "0900000003" in alert.message and alert.severity == "CRITICAL"

    again = reconciliation_run(broker=broker)  # the same unknown order: no second alert
    assert again.unknown_orders == run.unknown_orders
    assert Alert.objects.filter(kind=Alert.Kind.RECONCILIATION).count() == 1


def test_all_orders_known_is_a_match(new_symbol):
    position = open_position(new_symbol(), 3)
    broker = PagesBroker(
        holdings=[holding(position.symbol, 3)],
        orders=[kis_order(ours(position).broker_order_no, position.symbol)],
    )
    run = reconciliation_run(broker=broker)
    assert (run.result, run.unknown_orders) == ("MATCHED", [])


def test_an_unknown_order_of_a_symbol_being_sent_waits_for_next_time(new_symbol):
    symbol = new_symbol()
    intent = services.entry_intent_open(
        symbol=symbol, qty=3, idempotency_key=key(), limit_price=10_000
    )
    order = services.order_open(intent_id=intent.pk)
    Order.objects.filter(pk=order.pk).update(send_started_at=clock.now())  # on its way
    broker = PagesBroker(holdings=[], orders=[kis_order("0900000009", symbol)])
    run = reconciliation_run(broker=broker)
    assert run.unknown_orders == [] and run.result == "MATCHED"
    assert Reconciliation.objects.count() == 1


def test_an_unreadable_order_row_at_kis_is_reported(new_symbol):
    broker = PagesBroker(
        holdings=[], orders=[kis_order("0900000004", new_symbol()) | {"ord_qty": None}]
    )
    run = reconciliation_run(broker=broker)
    assert run.result == "MISMATCH"
    [entry] = run.unknown_orders
    assert entry["odno"] == "0900000004" and "ord_qty" in entry["unreadable"]
