"""An exit KIS refuses pauses its position's exits instead of being decided again at every pass
(trading.services.exit_refused, reached through execution's order_refused signal): until a
person resumes them after a refusal at KRX, until KRX's next exit phase after one at Nextrade.
End to end, with the simulator: tests/trading/test_exit_e2e.py and the drill's
exit_refused_by_kis."""

import datetime as dt
from decimal import Decimal

import pytest

from core import clock
from execution import services, signals
from execution.models import Alert
from tests.support.ledger import key, open_position
from trading.models import ExitProfile, PositionExitState
from trading.services import KIS_PAUSE, NXT_PAUSE, nxt_pauses_lift

pytestmark = pytest.mark.django_db(transaction=True)  # the pause forgets the cache on commit

TUESDAY = dt.date(2026, 11, 24)  # a KRX trading day, and Wednesday after it


def at(day: dt.date, hms: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hms), clock.SEOUL)


AFTER_MARKET = at(TUESDAY, "17:00:00")
WEDNESDAY = TUESDAY + dt.timedelta(days=1)


def refused(new_symbol, *, intent_type: str = "EXIT_STOP_LOSS", venue: str = "KRX"):
    """A managed position whose exit KIS refused: the ledger rejects it, execution says so."""
    position = open_position(new_symbol(), 10, 70_000)
    profile = ExitProfile.objects.create(name=key("profile"), stop_loss_pct=Decimal(3))
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    intent = services.exit_intent_open(
        position_id=position.pk,
        qty=10,
        intent_type=intent_type,
        idempotency_key=key(),
        limit_price=67_000,
        venue=venue,
    )
    order = services.order_open(intent_id=intent.pk)
    reason = "주문가능수량을 초과하였습니다. (msg_cd APBK9901)"
    signals.refused(services.order_reject(order_id=order.pk, reason=reason), reason=reason)
    return PositionExitState.objects.get(position=position)


def test_a_refusal_at_krx_pauses_the_exits_until_a_person_resumes_them(new_symbol):
    with clock.installed(clock.FixedClock(at(TUESDAY, "10:30:00"))):
        state = refused(new_symbol)
    assert state.paused_at is not None and state.paused_by == KIS_PAUSE
    [alert] = Alert.objects.filter(kind="EXIT", subject=state.position.symbol)
    assert (alert.severity, alert.state) == ("CRITICAL", "paused")
    assert "APBK9901" in alert.message and "resume" in alert.message
    assert nxt_pauses_lift(at(WEDNESDAY, "09:00:05")) == 0  # a person's to lift
    assert PositionExitState.objects.get(pk=state.pk).paused_at is not None


def test_a_refusal_at_nextrade_pauses_the_exits_until_krxs_next_session(new_symbol):
    with clock.installed(clock.FixedClock(AFTER_MARKET)):
        state = refused(new_symbol, venue="NXT")
    assert state.paused_at is not None and state.paused_by == NXT_PAUSE
    [alert] = Alert.objects.filter(kind="EXIT", subject=state.position.symbol)
    assert alert.severity == "WARNING" and "Nextrade refused" in alert.message
    for still in (at(TUESDAY, "19:59:00"), at(WEDNESDAY, "08:10:00")):  # Nextrade's sessions
        assert nxt_pauses_lift(still) == 0, still
    assert PositionExitState.objects.get(pk=state.pk).paused_at is not None
    assert nxt_pauses_lift(at(WEDNESDAY, "09:00:05")) == 1
    assert PositionExitState.objects.get(pk=state.pk).paused_at is None


@pytest.mark.parametrize("intent_type", ["MANUAL", "FLATTEN"])
def test_a_refused_order_of_a_person_or_the_flatten_policy_pauses_nothing(new_symbol, intent_type):
    with clock.installed(clock.FixedClock(at(TUESDAY, "10:30:00"))):
        state = refused(new_symbol, intent_type=intent_type)
    assert state.paused_at is None
    assert not Alert.objects.filter(kind="EXIT").exists()
