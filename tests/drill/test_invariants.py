"""The drill's invariant checker, as pure logic: a clean snapshot passes, and each kind of
damage it exists to find is found."""

import dataclasses
import datetime as dt

import pytest

from drill.invariants import BrokerOrder, LedgerIntent, LedgerOrder, LedgerPosition, Snapshot, check

T0 = dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.UTC)
DAY = "20261207"


def clean() -> Snapshot:
    """Two positions: A sold 10 of 10 (filled), B selling 5 of 20 (open at the broker)."""
    return Snapshot(
        taken_at=T0 + dt.timedelta(seconds=30),
        trading_state="ACTIVE",
        positions=[
            LedgerPosition(1, "000010", "CLOSED", 0, 0),
            LedgerPosition(2, "000020", "OPEN", 20, 5),
        ],
        intents=[
            LedgerIntent("i1", 1, "000010", "SELL", 10, "ORDERED", T0),
            LedgerIntent("i2", 2, "000020", "SELL", 5, "ORDERED", T0),
        ],
        orders=[
            LedgerOrder("o1", "i1", 1, "000010", "SELL", 10, 10, "FILLED", "0000000001", DAY, T0),
            LedgerOrder("o2", "i2", 2, "000020", "SELL", 5, 0, "SUBMITTED", "0000000002", DAY, T0),
        ],
        broker_orders=[
            BrokerOrder("0000000001", DAY, "000010", "SELL", 10, 10),
            BrokerOrder("0000000002", DAY, "000020", "SELL", 5, 0),
        ],
        broker_holdings={"000020": 20},
        expected_exits=("000010", "000020"),
    )


def test_a_clean_snapshot_holds():
    verdict = check(clean())
    assert verdict.violations == []
    assert (verdict.duplicates, verdict.lost, verdict.orders) == (0, 0, 2)
    assert verdict.invariants_held


def test_a_second_order_at_the_broker_for_one_intent_is_a_duplicate():
    snap = clean()
    # Sent twice: the second send's answer was lost, the ledger knows only the first.
    snap.broker_orders.append(BrokerOrder("0000000003", DAY, "000010", "SELL", 10, 0))
    verdict = check(snap)
    assert verdict.duplicates == 1
    assert any("unknown to the ledger" in v for v in verdict.violations)


def test_two_ledger_orders_of_one_intent_both_at_the_broker_are_a_duplicate():
    snap = clean()
    snap.orders.append(
        LedgerOrder("o3", "i1", 1, "000010", "SELL", 10, 0, "SUBMITTED", "0000000003", DAY, T0)
    )
    snap.broker_orders.append(BrokerOrder("0000000003", DAY, "000010", "SELL", 10, 0))
    snap.positions[0] = LedgerPosition(1, "000010", "OPEN", 0, 0)
    verdict = check(snap)
    assert verdict.duplicates == 1
    assert any("reached the broker 2 times" in v for v in verdict.violations)


def test_a_broker_number_the_simulator_does_not_know_is_a_violation():
    snap = clean()
    snap.orders[1] = dataclasses.replace(snap.orders[1], broker_order_no="0000000099")
    verdict = check(snap)
    assert any("0 orders at the simulator" in v for v in verdict.violations)


def test_an_intent_that_never_reached_the_broker_and_is_not_working_is_lost():
    snap = clean()
    snap.intents.append(LedgerIntent("i3", 2, "000020", "SELL", 3, "ORDERED", T0))
    # Its order gave up without a reason and without a broker number.
    snap.orders.append(
        LedgerOrder("o3", "i3", 2, "000020", "SELL", 3, 0, "CANCELLED", None, None, T0)
    )
    verdict = check(snap)
    assert verdict.lost == 1


def test_an_intent_still_working_is_not_lost_and_a_refused_one_neither():
    snap = clean()
    snap.intents.append(LedgerIntent("i3", 2, "000020", "SELL", 3, "NEW", T0))
    snap.intents.append(
        LedgerIntent("i4", 2, "000020", "SELL", 2, "REJECTED", T0, closed_reason="nothing sellable")
    )
    snap.positions[1] = LedgerPosition(2, "000020", "OPEN", 20, 8)
    verdict = check(snap)
    assert verdict.lost == 0
    assert verdict.violations == []


def test_an_expected_exit_never_decided_is_lost():
    snap = clean()
    snap.expected_exits += ("000030",)
    assert check(snap).lost == 1


@pytest.mark.parametrize("reserved", [0, 4, 6, 20])
def test_a_drifted_reserved_qty_is_a_violation(reserved):
    snap = clean()
    snap.positions[1] = LedgerPosition(2, "000020", "OPEN", 20, reserved)
    verdict = check(snap)
    assert any("reserved_qty" in v for v in verdict.violations)


def test_ledger_and_broker_holdings_must_agree():
    snap = clean()
    snap.broker_holdings["000020"] = 15
    assert any("ledger holds 20, the broker 15" in v for v in check(snap).violations)
    snap = clean()
    snap.broker_holdings["000010"] = 10  # sold in the ledger, still held at the broker
    assert any("000010: ledger holds 0" in v for v in check(snap).violations)


def test_nothing_stays_new_past_90_s():
    snap = clean()
    snap.orders[1] = dataclasses.replace(snap.orders[1], status="NEW")
    assert check(snap).violations == []  # 30 s old
    snap.taken_at = T0 + dt.timedelta(seconds=91)
    assert any("NEW for 91 s" in v for v in check(snap).violations)


def test_a_halted_state_may_hold_intents_new_but_not_orders():
    snap = clean()
    snap.intents.append(LedgerIntent("i3", 2, "000020", "SELL", 3, "NEW", T0))
    snap.positions[1] = LedgerPosition(2, "000020", "OPEN", 20, 8)
    snap.taken_at = T0 + dt.timedelta(seconds=120)
    assert any("intent i3" in v for v in check(snap).violations)
    snap.trading_state = "HALTED"
    assert not any("intent i3" in v for v in check(snap).violations)


def test_cancel_requests_at_the_broker_are_not_sends():
    snap = clean()
    snap.broker_orders.append(BrokerOrder("0000000003", DAY, "000020", "SELL", 5, 0, kind="cancel"))
    verdict = check(snap)
    assert verdict.orders == 2 and verdict.duplicates == 0


def test_the_cluster_does_not_inherit_the_drills_own_settings(monkeypatch, tmp_path):
    """The drill's process seeds with AEGIS_AUTO_SUBMIT=0; its cluster must send as deployed
    (doorbell, in-process senders, execute task), not from the sweep alone. Nor does it take
    the suite's AEGIS_MARKET_HOURS=0: it sends only when the market takes orders."""
    import datetime as dt

    from drill.cluster import Cluster

    class Services:
        pooling = "pgbouncer"

        def url(self, which, **_):
            return f"{which}://127.0.0.1/"

    monkeypatch.setenv("AEGIS_AUTO_SUBMIT", "0")
    monkeypatch.setenv("AEGIS_MARKET_HOURS", "0")
    cluster = Cluster(
        Services(), logs=tmp_path, clock_start=dt.datetime.now(dt.UTC), clock_origin=0.0, symbols={}
    )
    assert "AEGIS_AUTO_SUBMIT" not in cluster.env()
    assert "AEGIS_MARKET_HOURS" not in cluster.env()
