"""The notifications that sum up (execution/notify/): refused picks once per period, the day's
close once, with its realised P&L net of fees and tax; the alerts through the same outbox,
retried until their channel takes them; the outbox in the admin, read-only."""

import datetime as dt
import itertools

import pytest
from django.db import transaction
from django.urls import reverse

from core import clock
from execution import alerts, services
from execution.models import Alert, Notification, TradingState
from execution.notify import events
from execution.notify.deliver import deliver_due
from picks.models import GateSettings, Pick, PickSource
from picks.routing import pick_route
from tests.support import holds_for, wait_until
from tests.support.ledger import fill, key, open_position, submit
from tests.support.notify import TELEGRAM_PATH, Receiver, configure, deliverer
from trading.models import ExitProfile
from trading.services import day_end_run

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.date(2026, 11, 24)  # a Tuesday, a KRX trading day
SATURDAY = dt.date(2026, 11, 28)
_ids = itertools.count(1)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def at_seoul(day: dt.date, hh: int, mm: int, ss: int = 0) -> clock.FixedClock:
    return clock.FixedClock(dt.datetime.combine(day, dt.time(hh, mm, ss), clock.SEOUL))


def refused_picks(source: PickSource, n: int) -> None:
    """`n` BUY picks of `source`, each routed and refused at gate 1 (they never reach the
    market: no broker is asked)."""
    GateSettings.current()
    for _ in range(n):
        pick = Pick.objects.create(
            source=source,
            external_id=f"p{next(_ids)}",
            symbol="005930",
            side="BUY",
            qty=1,
            generated_at=clock.now(),
            received_at=clock.now(),
        )
        assert pick_route(pick.pk, routed_by="EVENT", broker=None) == "rejected"


def sources() -> tuple[PickSource, PickSource]:
    """One source with an exit profile, one without."""
    profile = ExitProfile.objects.create(name=f"p{next(_ids)}", stop_loss_pct=3)
    return (
        PickSource.objects.create(code=f"s{next(_ids)}", exit_profile=profile),
        PickSource.objects.create(code=f"bare{next(_ids)}"),
    )


def test_refused_picks_are_summed_up_once_per_period(settings, receiver):
    configure(settings, receiver.url, kinds={"telegram": ["refusals"], "slack": ["fill"]})
    at = at_seoul(SATURDAY, 10, 0, 5)
    with clock.installed(at):
        good, bare = sources()
        refused_picks(good, 2)  # KRX is closed on Saturdays
        refused_picks(bare, 3)  # no exit profile, whatever the day
        at.advance(dt.timedelta(minutes=4))
        refused_picks(good, 1)
        for _ in range(3):
            assert deliver_due() == {}  # the period (10:00–10:05) is not over
        at.set(dt.datetime.combine(SATURDAY, dt.time(10, 5), clock.SEOUL))
        deliver_due()
        deliver_due()
        at.advance(dt.timedelta(minutes=5))
        deliver_due()
    [summary] = receiver.texts(TELEGRAM_PATH)
    assert summary.splitlines() == [
        "Picks refused: 6, 10:00:05–10:04:05 KST",
        "gate 1 validity: 6 — KRX is closed today ×3; the source has no exit profile: an entry "
        "would not be watched ×3",
    ]
    assert receiver.texts("/slack") == []  # Slack did not opt into refusals
    assert Notification.objects.filter(kind="refusals", status="SENT").count() == 6


def test_refusal_reasons_count_together_whatever_their_figures(settings, receiver):
    configure(settings, receiver.url, kinds={"telegram": ["refusals"]})
    at = at_seoul(DAY, 10, 0)
    with clock.installed(at):
        good, _ = sources()
        GateSettings.current()
        GateSettings.objects.filter(pk=1).update(max_pick_age_s=5)
        for age in (7, 9, 12):  # stale, each by its own figure
            Pick.objects.create(
                source=good,
                external_id=f"p{next(_ids)}",
                symbol="005930",
                side="BUY",
                qty=1,
                generated_at=clock.now() - dt.timedelta(seconds=age),
                received_at=clock.now(),
            )
        for pick in Pick.objects.filter(status="NEW"):
            assert pick_route(pick.pk, routed_by="EVENT", broker=None) == "rejected"
        at.advance(dt.timedelta(minutes=5))
        deliver_due()
    [summary] = receiver.texts(TELEGRAM_PATH)
    assert summary.splitlines()[1] == (
        "gate 1 validity: 3 — stale: generated … s ago (at most … s) ×3"
    )


def test_a_burst_of_refusals_is_one_summary(settings, receiver):
    configure(settings, receiver.url, kinds={"telegram": ["refusals"]})
    reasons = [
        (120, "gate 2 risk", "20 positions open or being bought (at most 20)"),
        (60, "gate 3 price", "the last price is 6.2 s old (at most 5 s)"),
        (40, "gate 2 risk", "total exposure would be 210,000,000 KRW (at most 200,000,000 KRW)"),
        (20, "gate 2 risk", "cash unknown: no reconciliation with KIS has read the deposit yet"),
        (9, "gate 2 risk", "the budget of 10,000 KRW buys no share at 71,000 KRW"),
        (1, "gate 1 validity", "trading is HALTED: no new entries"),
    ]
    at = at_seoul(DAY, 10, 1)
    with clock.installed(at), transaction.atomic():
        ids = itertools.count(1)
        for n, gate, reason in reasons:
            for _ in range(n):
                events.refusal_record(pick_id=next(ids), gate=gate, reason=reason)
    at.advance(dt.timedelta(minutes=4))
    with clock.installed(at):
        for _ in range(3):
            deliver_due()
    [summary] = receiver.texts(TELEGRAM_PATH)
    assert summary.splitlines() == [
        "Picks refused: 250, 10:01:00–10:01:00 KST",
        "gate 1 validity: 1 — trading is HALTED: no new entries ×1",
        "gate 2 risk: 189 — … positions open or being bought (at most …) ×120; total exposure "
        "would be … KRW (at most … KRW) ×40; cash unknown: no reconciliation with KIS has read "
        "the deposit yet ×20; 1 more",
        "gate 3 price: 60 — the last price is … s old (at most … s) ×60",
    ]
    assert Notification.objects.filter(status="SENT").count() == 250


def test_the_close_is_summed_up_once_with_pnl_net_of_fees_and_tax(settings, receiver, new_symbol):
    configure(settings, receiver.url, kinds={"telegram": ["close"], "slack": ["close"]})
    with clock.installed(at_seoul(DAY, 10, 0)):
        position = open_position(new_symbol(), 10, price=10_000)  # fee 14
        sell = services.exit_intent_open(
            position_id=position.pk,
            qty=10,
            intent_type="EXIT_TAKE_PROFIT",
            idempotency_key=key(),
            limit_price=11_000,
        )
        fill(submit(sell), 10, 11_000)  # +10,000 KRW before its fee 15 and tax 220
        open_position(new_symbol(), 3, price=5_000)  # held overnight; fee 2
        _, bare = sources()
        refused_picks(bare, 2)
        TradingState.objects.update_or_create(pk=1, defaults={"day_ended_for": DAY})
    with clock.installed(at_seoul(DAY, 15, 35)):
        day_end_run(broker=None)  # KRX has closed, Nextrade's after-market has not
        assert not Notification.objects.exists()
    with clock.installed(at_seoul(DAY, 20, 1, 5)):
        assert day_end_run(broker=None)["close_told"] is True
        assert day_end_run(broker=None)["close_told"] is False  # every 10 s: once is enough
        deliver_due()
        deliver_due()
    [summary] = receiver.texts(TELEGRAM_PATH)
    assert receiver.texts("/slack") == [summary]
    lines = summary.splitlines()
    assert lines[:5] == [
        "Day close 2026-11-24: +9,749 KRW realised net",
        "+10,000 KRW before 251 KRW of fees and tax",
        "3 orders filled (2 buys, 1 sells; 3 fills)",
        "Picks refused: 2 (gate 1 validity: 2)",
        "Intent to order accepted: p50 0.0 ms, p99 0.0 ms (3 orders)",
    ]
    assert lines[5:] == ["Positions held: 1"]


def test_an_alert_goes_through_the_outbox_and_is_sent_once_its_channel_answers(settings, receiver):
    configure(settings, receiver.url, kinds={"slack": []})
    receiver.status = 503
    alerts.alert_raise(
        kind=Alert.Kind.STREAM,
        severity=Alert.Severity.CRITICAL,
        subject="prices",
        state="down",
        message="The KIS prices stream is down.",
        key=f"test:{key()}",
    )
    alerts.flush()  # the raising process tried at once: Slack refused
    [alert] = Alert.objects.all()
    assert alert.deliveries == {"slack": "failed: HTTP 503"}
    [row] = Notification.objects.all()
    assert (row.kind, row.channel, row.status, row.attempts) == ("alert", "slack", "PENDING", 1)
    receiver.status = 200
    with deliverer():  # beat's deliverer tries again
        wait_until(lambda: receiver.texts("/slack"), "the alert on Slack")
        holds_for(lambda: len(receiver.texts("/slack")) == 1, 0.5, "one message")
    [text] = receiver.texts("/slack")
    assert text == "[Aegis CRITICAL] KIS stream down prices: down\nThe KIS prices stream is down."
    alert.refresh_from_db()
    assert alert.deliveries == {"slack": "sent"}


def test_the_outbox_is_read_only_in_the_admin(settings, receiver, admin_client, new_symbol):
    configure(settings, receiver.url, kinds={"telegram": ["fill"]})
    with clock.installed(at_seoul(DAY, 10, 0, 7)):
        open_position(new_symbol(), 1)
    changelist = admin_client.get(reverse("admin:execution_notification_changelist"))
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert "2026-11-24 10:00:07" in html and "telegram" in html and "PENDING" in html
    [row] = Notification.objects.all()
    assert admin_client.get(reverse("admin:execution_notification_add")).status_code == 403
    page = admin_client.post(
        reverse("admin:execution_notification_change", args=[row.pk]), {"status": "SENT"}
    )
    assert page.status_code == 403
    row.refresh_from_db()
    assert row.status == "PENDING"
