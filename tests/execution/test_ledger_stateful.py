"""Random sequences of ledger operations against a plain-Python model of the ledger.

The model predicts every outcome, refusals included; after each step the database must agree with
it, and I1 must hold for every position.
"""

import itertools
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from execution import services
from execution.exceptions import (
    FillExceedsOrder,
    InsufficientAvailableQty,
    InvalidIntentState,
    InvalidOrderState,
    PositionClosed,
    TradingNotAllowed,
)
from execution.models import Position
from execution.selectors import position_ledger_breakdown

pytestmark = pytest.mark.django_db

_symbols = itertools.count(500_000)
OPEN_ORDER = {"NEW", "SUBMITTED", "PARTIAL_FILLED"}


class LedgerMachine(RuleBasedStateMachine):
    intents = Bundle("intents")
    orders = Bundle("orders")
    fills = Bundle("fills")

    def __init__(self):
        super().__init__()
        services.trading_state_set(state="ACTIVE", reason="example start", changed_by="hypothesis")
        self.state = "ACTIVE"
        self.symbols = [f"{next(_symbols):06d}" for _ in range(2)]
        self.position_of = {}  # symbol -> current position id
        self.pos = {}  # position id -> {"qty", "closed"}
        self.intent = {}  # id -> {"pid", "side", "qty", "status"}
        self.order = {}  # id -> {"pid", "side", "qty", "filled", "status", "numbered"}

    # --- the model ----------------------------------------------------------------------------
    def reserved(self, pid):
        return sum(
            i["qty"]
            for i in self.intent.values()
            if i["pid"] == pid and i["side"] == "SELL" and i["status"] == "NEW"
        ) + sum(
            o["qty"] - o["filled"]
            for o in self.order.values()
            if o["pid"] == pid and o["side"] == "SELL" and o["status"] in OPEN_ORDER
        )

    def maybe_close(self, pid):
        busy = any(i["pid"] == pid and i["status"] == "NEW" for i in self.intent.values()) or any(
            o["pid"] == pid and o["status"] in OPEN_ORDER for o in self.order.values()
        )
        if self.pos[pid]["qty"] == 0 and self.reserved(pid) == 0 and not busy:
            self.pos[pid]["closed"] = True

    def expect_error(self, exc_type, call):
        with pytest.raises(exc_type):
            call()

    # --- rules --------------------------------------------------------------------------------
    @initialize(sym=st.integers(0, 1), qty=st.integers(1, 200))
    def holdings(self, sym, qty):
        """Start each example with shares in one symbol, bought through the ledger."""
        symbol = self.symbols[sym]
        intent = services.entry_intent_open(
            symbol=symbol, qty=qty, idempotency_key=str(uuid.uuid4())
        )
        order = services.order_open(intent_id=intent.pk)
        services.fill_apply(
            order_id=order.pk, broker_fill_key=str(uuid.uuid4()), qty=qty, price=10_000
        )
        self.position_of[symbol] = intent.position_id
        self.pos[intent.position_id] = {"qty": qty, "closed": False}
        self.intent[str(intent.pk)] = {
            "pid": intent.position_id,
            "side": "BUY",
            "qty": qty,
            "status": "ORDERED",
        }
        self.order[str(order.pk)] = {
            "pid": intent.position_id,
            "side": "BUY",
            "qty": qty,
            "filled": qty,
            "status": "FILLED",
            "numbered": False,
        }

    @rule(target=intents, sym=st.integers(0, 1), qty=st.integers(1, 50))
    def entry(self, sym, qty):
        symbol = self.symbols[sym]
        call = lambda: services.entry_intent_open(  # noqa: E731
            symbol=symbol, qty=qty, idempotency_key=str(uuid.uuid4())
        )
        if self.state != "ACTIVE":
            self.expect_error(TradingNotAllowed, call)
            return multiple()
        intent = call()
        pid = self.position_of.get(symbol)
        if pid is None or self.pos[pid]["closed"]:
            assert intent.position_id != pid
            self.position_of[symbol] = pid = intent.position_id
            self.pos[pid] = {"qty": 0, "closed": False}
        assert intent.position_id == pid
        self.intent[str(intent.pk)] = {"pid": pid, "side": "BUY", "qty": qty, "status": "NEW"}
        return str(intent.pk)

    @rule(target=intents, sym=st.integers(0, 1), qty=st.integers(1, 80))
    def exit(self, sym, qty):
        pid = self.position_of.get(self.symbols[sym])
        if pid is None:
            return multiple()
        call = lambda: services.exit_intent_open(  # noqa: E731
            position_id=pid, qty=qty, intent_type="EXIT_TRAILING", idempotency_key=str(uuid.uuid4())
        )
        available = self.pos[pid]["qty"] - self.reserved(pid)
        if self.state == "HALTED":
            self.expect_error(TradingNotAllowed, call)
        elif self.pos[pid]["closed"]:
            self.expect_error(PositionClosed, call)
        elif available <= 0:
            self.expect_error(InsufficientAvailableQty, call)
        else:
            intent = call()
            assert intent.qty == min(qty, available)
            self.intent[str(intent.pk)] = {
                "pid": pid,
                "side": "SELL",
                "qty": intent.qty,
                "status": "NEW",
            }
            return str(intent.pk)
        return multiple()

    @rule(target=orders, intent_id=intents, broker_qty=st.one_of(st.none(), st.integers(0, 120)))
    def order_open(self, intent_id, broker_qty):
        i = self.intent[intent_id]
        call = lambda: services.order_open(  # noqa: E731
            intent_id=intent_id, broker_sellable_qty=broker_qty
        )
        forbidden = self.state == "HALTED" or (self.state == "REDUCING" and i["side"] == "BUY")
        if i["status"] == "ORDERED":
            mine = self.order[i["order"]]
            if forbidden and mine["status"] == "NEW" and not mine["numbered"]:
                # Recorded but never sent: it may go out only when the state allows it.
                self.expect_error(TradingNotAllowed, call)
                return multiple()
            existing = call()
            assert str(existing.pk) == i["order"]
            return multiple()
        if i["status"] != "NEW":
            self.expect_error(InvalidIntentState, call)
            return multiple()
        if forbidden:
            self.expect_error(TradingNotAllowed, call)
            return multiple()
        qty = i["qty"]
        if i["side"] == "SELL":
            sellable = self.pos[i["pid"]]["qty"] - (self.reserved(i["pid"]) - i["qty"])
            if broker_qty is not None:
                sellable = min(sellable, broker_qty)
            qty = min(qty, sellable)
        order = call()
        if qty <= 0:
            assert order is None
            i["status"] = "REJECTED"
            self.maybe_close(i["pid"])
            return multiple()
        assert order.qty == qty
        i["status"] = "ORDERED"
        i["order"] = str(order.pk)
        self.order[str(order.pk)] = {
            "pid": i["pid"],
            "side": i["side"],
            "qty": qty,
            "filled": 0,
            "status": "NEW",
            "numbered": False,
        }
        return str(order.pk)

    @rule(order_id=orders)
    def submit(self, order_id):
        o = self.order[order_id]

        def call():
            return services.order_mark_submitted(
                order_id=order_id, broker_order_no=uuid.uuid4().hex[:10]
            )

        if o["status"] != "NEW" or o["numbered"]:
            self.expect_error(InvalidOrderState, call)
            return
        call()
        o["status"], o["numbered"] = "SUBMITTED", True

    @rule(
        target=fills,
        order_id=orders,
        part=st.integers(1, 3),
        too_much=st.sampled_from([False, False, False, True]),
        price=st.integers(1_000, 20_000),
    )
    def fill(self, order_id, part, too_much, price):
        o = self.order[order_id]
        remaining = o["qty"] - o["filled"]
        qty = remaining + 1 if too_much else max(1, remaining // part)
        key = str(uuid.uuid4())
        call = lambda: services.fill_apply(  # noqa: E731
            order_id=order_id, broker_fill_key=key, qty=qty, price=price
        )
        if o["status"] not in OPEN_ORDER:
            self.expect_error(InvalidOrderState, call)
            return multiple()
        if qty > o["qty"] - o["filled"]:
            self.expect_error(FillExceedsOrder, call)
            return multiple()
        call()
        o["filled"] += qty
        o["status"] = "FILLED" if o["filled"] == o["qty"] else "PARTIAL_FILLED"
        self.pos[o["pid"]]["qty"] += qty if o["side"] == "BUY" else -qty
        self.maybe_close(o["pid"])
        return (order_id, key, qty, price)

    @rule(f=fills)
    def repeat_fill(self, f):
        order_id, key, qty, price = f
        services.fill_apply(order_id=order_id, broker_fill_key=key, qty=qty, price=price)

    @rule(order_id=orders)
    def cancel_order(self, order_id):
        o = self.order[order_id]
        call = lambda: services.order_mark_cancelled(order_id=order_id)  # noqa: E731
        if o["status"] == "CANCELLED":
            call()
        elif o["status"] not in OPEN_ORDER:
            self.expect_error(InvalidOrderState, call)
        else:
            call()
            o["status"] = "CANCELLED"
            self.maybe_close(o["pid"])

    @rule(order_id=orders)
    def reject_order(self, order_id):
        o = self.order[order_id]
        call = lambda: services.order_reject(order_id=order_id, reason="test")  # noqa: E731
        if o["status"] == "REJECTED":
            call()
        elif o["status"] not in ("NEW", "SUBMITTED"):
            self.expect_error(InvalidOrderState, call)
        else:
            call()
            o["status"] = "REJECTED"
            self.maybe_close(o["pid"])

    @rule(intent_id=consumes(intents))
    def cancel_intent(self, intent_id):
        i = self.intent[intent_id]
        call = lambda: services.intent_cancel(intent_id=intent_id, reason="test")  # noqa: E731
        if i["status"] != "NEW":
            self.expect_error(InvalidIntentState, call)
            return
        call()
        i["status"] = "CANCELLED"
        self.maybe_close(i["pid"])

    @rule(state=st.sampled_from(["ACTIVE", "ACTIVE", "REDUCING", "HALTED"]))
    def set_state(self, state):
        services.trading_state_set(state=state, reason="test", changed_by="hypothesis")
        self.state = state

    # --- invariants ---------------------------------------------------------------------------
    @invariant()
    def database_agrees_with_model_and_i1_holds(self):
        for pid, expected in self.pos.items():
            position = Position.objects.get(pk=pid)
            assert position.qty == expected["qty"], (pid, position.qty, expected)
            assert position.reserved_qty == self.reserved(pid)
            assert (position.status == "CLOSED") == expected["closed"]
            breakdown = position_ledger_breakdown(position=position)
            assert breakdown.consistent, breakdown
            assert 0 <= breakdown.available_qty <= position.qty


def test_ledger_matches_its_model_under_random_operations():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
