"""The emergency-flatten policy on PostgreSQL and the injectable clock: it decides once per
outage, only after N minutes of it; with auto_flatten off nothing is sold; with it on, one
FLATTEN intent per open position through the ledger and trading goes to REDUCING."""

import datetime as dt

import pytest

from core import clock
from execution.alerts import breaker_transition
from execution.models import Alert, FlattenPolicy, OrderIntent, Position
from execution.services.flatten import flatten_policy_check
from execution.services.trading_state import trading_state_get
from market.models import BestPrice
from tests.support.ledger import open_position
from trading.services import prices_stale_since

pytestmark = pytest.mark.django_db

T = dt.datetime(2026, 11, 24, 10, 0, tzinfo=clock.SEOUL)  # a Tuesday, in the session


@pytest.fixture
def at():
    moment = clock.FixedClock(T)
    with clock.installed(moment):
        yield moment


def policy(**fields) -> FlattenPolicy:
    FlattenPolicy.current()
    FlattenPolicy.objects.filter(pk=1).update(enabled=True, **fields)
    return FlattenPolicy.current()


def outage(at: clock.FixedClock, name: str = "kis-order") -> None:
    """KIS's order circuit opens now (as the breaker reports it)."""
    breaker_transition(name, "closed", "open", int(at.now().timestamp()))


def flatten_intents() -> list[OrderIntent]:
    return list(OrderIntent.objects.filter(intent_type="FLATTEN"))


def test_the_policy_waits_n_minutes_then_alerts_once_and_sells_nothing(at):
    policy(kis_down_minutes=5)
    held = open_position("005930", 10)
    outage(at)
    at.advance(dt.timedelta(minutes=4, seconds=59))
    assert flatten_policy_check(breaker_state="open") is None
    at.advance(dt.timedelta(seconds=1))
    decision = flatten_policy_check(breaker_state="open")
    assert (decision.kind, decision.severity) == ("FLATTEN", "CRITICAL")
    assert "KIS down since 10:00:00" in decision.message
    assert "flatten by hand in the MTS app" in decision.message and "005930 ×10" in decision.message
    at.advance(dt.timedelta(minutes=10))
    assert flatten_policy_check(breaker_state="open") is None  # decided once per outage
    assert flatten_intents() == [] and trading_state_get() == "ACTIVE"
    held.refresh_from_db()
    assert (held.qty, held.reserved_qty) == (10, 0)  # nothing sold, nothing held back
    assert Alert.objects.filter(kind="FLATTEN").count() == 1


def test_auto_flatten_opens_one_flatten_intent_per_open_position_once(at):
    policy(kis_down_minutes=5, auto_flatten=True)
    first, second = open_position("005930", 10), open_position("000660", 3)
    outage(at)
    at.advance(dt.timedelta(minutes=5))
    assert flatten_policy_check(breaker_state="half-open") is not None  # still not closed
    assert flatten_policy_check(breaker_state="open") is None
    intents = flatten_intents()
    assert sorted((i.position_id, i.qty, i.side) for i in intents) == sorted(
        [(first.pk, 10, "SELL"), (second.pk, 3, "SELL")]
    )
    assert all(i.status == "NEW" for i in intents)  # they go out once KIS answers
    assert trading_state_get() == "REDUCING"
    assert Position.objects.get(pk=first.pk).reserved_qty == 10  # through the ledger


def test_a_closed_circuit_or_a_disabled_policy_decides_nothing(at):
    open_position("005930", 10)
    outage(at)
    at.advance(dt.timedelta(minutes=30))
    assert flatten_policy_check(breaker_state="open") is None  # the policy is off by default
    policy(auto_flatten=True)
    breaker_transition("kis-order", "half-open", "closed", int(T.timestamp()))
    assert flatten_policy_check(breaker_state="closed") is None
    assert flatten_intents() == [] and not Alert.objects.filter(kind="FLATTEN").exists()


def test_a_new_outage_is_a_new_decision(at):
    policy(kis_down_minutes=1)
    open_position("005930", 10)
    outage(at)
    at.advance(dt.timedelta(minutes=1))
    assert flatten_policy_check(breaker_state="open") is not None
    at.advance(dt.timedelta(minutes=1))
    breaker_transition("kis-order", "half-open", "closed", int(T.timestamp()))
    at.advance(dt.timedelta(minutes=1))
    outage(at)
    assert flatten_policy_check(breaker_state="open") is None  # this one just began
    at.advance(dt.timedelta(minutes=1))
    assert flatten_policy_check(breaker_state="open") is not None
    assert Alert.objects.filter(kind="FLATTEN").count() == 2


def test_every_held_price_stale_in_the_session_triggers_it(at):
    policy(on_prices_stale=True, prices_stale_s=120)
    open_position("005930", 10)
    BestPrice.objects.create(
        symbol="005930", price=10_000, source="WS", event_at=T - dt.timedelta(seconds=119)
    )
    assert prices_stale_since(stale_s=120) is None
    at.advance(dt.timedelta(seconds=1))
    since = prices_stale_since(stale_s=120)
    assert since == T - dt.timedelta(seconds=119)
    decision = flatten_policy_check(breaker_state="closed", prices_stale_since=since)
    assert "price stale since 09:58:01" in decision.message
    at.set(dt.datetime(2026, 11, 24, 16, 0, tzinfo=clock.SEOUL))  # after the close
    assert prices_stale_since(stale_s=120) is None
