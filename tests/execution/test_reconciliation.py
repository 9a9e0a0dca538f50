"""Reconciliation of the ledger with KIS's holdings, against the simulator on loopback: mismatches
recorded, flagged and alerted; the startup gate; sells capped by KIS's orderable qty (I4b).
"""

import logging
import subprocess
import sys

import pytest

from core import clock
from execution import services
from execution.exceptions import TradingNotAllowed
from execution.models import Alert, Order, Position, Reconciliation, TradingState
from execution.services.reconciliation import reconciliation_run
from execution.services.submission import Outcome, intent_submit
from execution.services.trading_state import reconciliation_require
from tests.support import ROOT
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.ledger import key, open_position
from tests.support.workers import broker_orders, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(kis_sim):
    return kis_worker.client_for(sim_dict(kis_sim), rate=50)


def hold(sim, holdings: dict[str, int]):
    """Give the simulator's account these holdings ({symbol: qty}), at 71,000 each."""
    for symbol in holdings:
        sim.control("/_sim/prices", {"pdno": symbol, "price": 71_000, "prev_close": 71_000})
    sim.account_set(holdings)


def test_agreeing_holdings_match_and_open_the_startup_gate(kis_sim, client):
    open_position("005930", 10, 71_000)
    hold(kis_sim, {"005930": 10})
    reconciliation_require()
    assert services.trading_state_get() == "HALTED"
    run = reconciliation_run(broker=client, trigger="STARTUP")
    assert (run.result, run.symbols_checked, run.mismatches.count()) == ("MATCHED", 1, 0)
    assert services.trading_state_get() == "ACTIVE"
    # The gate's moments are the database's clock, shared by every host.
    state = TradingState.objects.get()
    assert state.reconciled_at >= state.reconcile_required_since


def test_mismatches_are_recorded_flagged_and_alerted(kis_sim, client, caplog):
    position = open_position("005930", 10, 71_000)
    hold(kis_sim, {"005930": 7, "000660": 5})  # 3 sold outside Aegis; 000660 bought outside it
    with caplog.at_level(logging.CRITICAL, logger="aegis.alerts"):
        run = reconciliation_run(broker=client)
    assert run.result == "MISMATCH"
    found = {(m.symbol, m.ledger_qty, m.broker_qty, m.position_id) for m in run.mismatches.all()}
    assert found == {("005930", 10, 7, position.pk), ("000660", 0, 5, None)}
    position.refresh_from_db()
    assert (position.qty, position.broker_qty) == (10, 7)  # the ledger itself is left alone
    alerts = [r for r in caplog.records if r.name == "aegis.alerts"]
    assert len(alerts) == 1 and "005930 ledger 10 KIS 7" in alerts[0].getMessage()
    [alert] = Alert.objects.filter(kind="RECONCILIATION")  # the admin's alert history
    assert (alert.severity, alert.key) == ("CRITICAL", f"reconciliation:{run.pk}")

    hold(kis_sim, {"005930": 10})  # a person put it right
    assert reconciliation_run(broker=client).result == "MATCHED"
    position.refresh_from_db()
    assert position.broker_qty is None


def test_kis_unreadable_keeps_the_startup_gate_closed(kis_sim, client, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    intent = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
    reconciliation_require()
    kis_sim.control("/_sim/faults", {"outage_s": 30})
    run = reconciliation_run(broker=client, trigger="STARTUP")
    assert run.result == "FAILED" and run.error
    assert services.trading_state_get() == "HALTED"
    with pytest.raises(TradingNotAllowed):
        services.order_open(intent_id=intent.pk)
    assert not Order.objects.exists()
    kis_sim.control("/_sim/faults", method="DELETE")
    assert reconciliation_run(broker=client, trigger="STARTUP").result == "MATCHED"
    assert services.trading_state_get() == "ACTIVE"


def test_a_person_halting_is_not_undone_by_a_reconciliation(kis_sim, client):
    services.trading_state_set(state="HALTED", reason="lunch", changed_by="pytest")
    reconciliation_require()
    reconciliation_run(broker=client, trigger="STARTUP")
    assert services.trading_state_get() == "HALTED"


def test_a_sell_is_capped_by_what_kis_says_is_orderable(kis_sim, client, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    position = open_position("005930", 10, 71_000)
    hold(kis_sim, {"005930": 6})
    reconciliation_run(broker=client)
    exit_ = services.exit_intent_open(
        position_id=position.pk, qty=10, intent_type="EXIT_STOP_LOSS", idempotency_key=key()
    )
    assert intent_submit(intent_id=exit_.pk, broker=client) is Outcome.SUBMITTED
    order = Order.objects.get(intent=exit_)
    assert order.qty == 6 and order.status == "SUBMITTED"
    assert [o["qty"] for o in broker_orders(kis_sim)] == [6]
    position.refresh_from_db()
    assert (position.qty, position.reserved_qty) == (10, 6)  # the 4 KIS would refuse are free


def test_a_sell_of_an_agreeing_position_does_not_ask_kis(kis_sim, client, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    position = open_position("005930", 10, 71_000)
    hold(kis_sim, {"005930": 10})
    reconciliation_run(broker=client)
    balance_reads = sum(
        1 for e in kis_sim.book()["requests"] if e["path"].endswith("inquire-balance")
    )
    exit_ = services.exit_intent_open(
        position_id=position.pk, qty=10, intent_type="EXIT_STOP_LOSS", idempotency_key=key()
    )
    assert intent_submit(intent_id=exit_.pk, broker=client) is Outcome.SUBMITTED
    assert Order.objects.get(intent=exit_).qty == 10
    assert (
        sum(1 for e in kis_sim.book()["requests"] if e["path"].endswith("inquire-balance"))
        == balance_reads
    )


def test_symbols_with_an_order_in_flight_are_left_for_next_time(kis_sim, client, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    open_position("005930", 10, 71_000)
    intent = services.entry_intent_open(symbol="005930", qty=5, idempotency_key=key())
    order = services.order_open(intent_id=intent.pk)
    Order.objects.filter(pk=order.pk).update(send_started_at=clock.now())  # sent, answer unknown
    hold(kis_sim, {"005930": 15})  # it did arrive, and filled
    run = reconciliation_run(broker=client)
    assert (run.result, run.symbols_skipped, run.mismatches.count()) == ("MATCHED", ["005930"], 0)
    assert Position.objects.get(symbol="005930").broker_qty is None


def test_the_reconcile_command_opens_the_gate_or_fails_loudly(kis_sim):
    command = [sys.executable, "manage.py", "reconcile", "--startup"]
    hold(kis_sim, {})
    done = subprocess.run(
        command, cwd=ROOT, env=worker_env(kis_sim), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "MATCHED" in done.stdout
    assert services.trading_state_get() == "ACTIVE"

    kis_sim.control("/_sim/faults", {"outage_s": 60})
    failed = subprocess.run(
        command, cwd=ROOT, env=worker_env(kis_sim), capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1 and "reconciliation failed" in failed.stderr
    assert services.trading_state_get() == "HALTED"
    assert list(Reconciliation.objects.values_list("result", flat=True).order_by("pk")) == [
        "MATCHED",
        "FAILED",
    ]
