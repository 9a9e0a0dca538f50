"""The market cadence on a simulated clock: the intervals beat keeps in each window, dropped
ticks after a stall, windows edited in the admin applying without a restart, and passes that
never overlap."""

import datetime as dt
import statistics

import pytest
from django.core.cache import cache

from core.clock import SEOUL
from market.calendar import DEFAULT_WINDOWS
from trading import cadence as cadence_module
from trading.beat import ExitCadenceScheduler, windows_from_db
from trading.cadence import CadenceDriver, PrequeueDriver
from trading.models import CadenceWindow
from trading.tasks import PASS_LOCK, exit_pass_task

MONDAY = dt.date(2026, 11, 23)


def at(hh, mm, ss=0, day=MONDAY):
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=SEOUL)


class Simulation:
    """Beat's loop on a simulated clock: tick, sleep what tick asks (plus a jitter), repeat."""

    def __init__(self, windows=DEFAULT_WINDOWS, jitter_ms=7):
        self.now = None
        self.sent: list[tuple[dt.datetime, float]] = []
        self.jitter = dt.timedelta(milliseconds=jitter_ms)
        self.driver = CadenceDriver(
            send=lambda expires: self.sent.append((self.now, expires)),
            windows=lambda: windows,
            monotonic=lambda: 0.0,
        )

    def run(self, start, end, stall_at=None, stall=dt.timedelta(0)):
        self.now = start
        while self.now < end:
            wait = self.driver.tick(self.now)
            self.now += dt.timedelta(seconds=wait) + self.jitter
            if stall_at is not None and self.now >= stall_at:
                self.now, stall_at = self.now + stall, None

    def gaps_ms(self, start, end):
        times = [t for t, _ in self.sent if start <= t < end]
        return [(b - a).total_seconds() * 1000 for a, b in zip(times, times[1:])]


@pytest.mark.parametrize(
    "start, end, expected_ms",
    [
        (at(8, 55), at(9, 10), 200),
        (at(9, 10), at(15, 15), 2000),
        (at(15, 15), at(15, 30), 500),
    ],
)
def test_intervals_hold_within_twenty_percent_in_each_window(start, end, expected_ms):
    sim = Simulation()
    sim.run(at(8, 54), at(15, 31))
    gaps = sim.gaps_ms(start, end)[1:-1]  # the edges belong to two windows
    assert gaps and all(0.8 * expected_ms <= g <= 1.2 * expected_ms for g in gaps), (
        min(gaps),
        max(gaps),
    )
    assert abs(statistics.fmean(gaps) - expected_ms) <= 0.05 * expected_ms
    expiries = {e for t, e in sim.sent if start <= t < end}
    assert expiries == {expected_ms / 1000}  # a pass that cannot start in time is dropped


def test_nothing_is_sent_outside_the_trading_day():
    sim = Simulation()
    sim.run(at(7, 0), at(7, 59, 59))
    sim.run(at(8, 50), at(8, 54, 59))  # between Nextrade's pre-market and KRX's rush
    sim.run(at(15, 30), at(15, 39, 59))  # between KRX's close and Nextrade's after-market
    sim.run(at(20, 0), at(23, 0))
    sim.run(at(9, 0, day=dt.date(2026, 11, 22)), at(9, 30, day=dt.date(2026, 11, 22)))  # Sunday
    assert sim.sent == []


def test_nextrades_own_sessions_are_evaluated_every_two_seconds():
    sim = Simulation()
    sim.run(at(15, 39), at(15, 45))
    first = sim.sent[0][0]
    assert at(15, 40) <= first < at(15, 40) + dt.timedelta(seconds=1.1)
    gaps = sim.gaps_ms(at(15, 41), at(15, 45))
    assert gaps and all(1900 <= g <= 2100 for g in gaps)


def test_a_stall_drops_the_missed_passes_instead_of_sending_them_late():
    sim = Simulation()
    sim.run(at(9, 0), at(9, 0, 10), stall_at=at(9, 0, 2), stall=dt.timedelta(seconds=3))
    gaps = sim.gaps_ms(at(9, 0), at(9, 0, 10))
    assert max(gaps) >= 3000  # the stall itself
    assert sorted(gaps)[-2] <= 240  # and no burst of catch-up passes after it
    assert len(sim.sent) <= 10_000 / 200 - 3_000 / 200 + 2


def test_the_rush_follows_a_late_open():
    sim = Simulation()
    csat = dt.date(2026, 11, 19)
    sim.run(at(9, 50, day=csat), at(10, 15, day=csat))  # after Nextrade's pre-market
    first = sim.sent[0][0]  # outside trading hours the driver looks again every second
    assert at(9, 55, day=csat) <= first < at(9, 55, day=csat) + dt.timedelta(seconds=1.1)
    gaps = sim.gaps_ms(at(9, 56, day=csat), at(10, 9, day=csat))
    assert all(160 <= g <= 240 for g in gaps)


@pytest.mark.django_db
def test_windows_edited_in_the_admin_apply_without_a_restart(monkeypatch):
    assert {w.interval_ms for w in windows_from_db()} == {200, 500}  # the seeded defaults
    clock_s = [0.0]
    sent = []
    driver = CadenceDriver(send=sent.append, windows=windows_from_db, monotonic=lambda: clock_s[0])
    now = at(8, 58)
    driver.tick(now)
    assert sent == [0.2]
    CadenceWindow.objects.filter(name="morning rush").update(interval_ms=100)
    driver.tick(now + dt.timedelta(seconds=1))
    assert sent[-1] == 0.2  # still the windows read a moment ago
    clock_s[0] += cadence_module.WINDOWS_REFRESH_S
    driver.tick(now + dt.timedelta(seconds=2))
    assert sent[-1] == 0.1


def test_the_scheduler_sends_passes_between_its_database_reads(monkeypatch):
    sent, prequeued = [], []
    monkeypatch.setattr("trading.beat.send_exit_pass", lambda expires: sent.append(expires))
    monkeypatch.setattr("trading.beat.send_gap_prequeue", lambda: prequeued.append(1))
    database_ticks = []
    monkeypatch.setattr(
        "django_celery_beat.schedulers.DatabaseScheduler.tick",
        lambda self, *a, **k: database_ticks.append(1) or 5.0,
    )
    monkeypatch.setattr(
        "django_celery_beat.schedulers.DatabaseScheduler.__init__", lambda self, *a, **k: None
    )
    scheduler = ExitCadenceScheduler()
    scheduler.cadence = CadenceDriver(
        send=lambda e: sent.append(e), windows=lambda: DEFAULT_WINDOWS
    )
    from core import clock

    with clock.installed(clock.FixedClock(at(9, 0))):
        waits = [scheduler.tick() for _ in range(3)]
    assert sent == [0.2] and database_ticks == [1]  # the database is read at its own pace
    assert prequeued == [1]  # late, within the opening minute, but once
    assert all(0 < w <= 0.2 for w in waits[1:])


def test_beat_sleeps_the_real_share_of_a_sped_up_clocks_wait(monkeypatch):
    """On a day played at 60x (the soak, the drill), 10 s of the clock to the pre-queue is a
    sixth of a real second: beat must not sleep through the opening minute."""
    monkeypatch.setattr("trading.beat.send_gap_prequeue", lambda: None)
    monkeypatch.setattr(
        "django_celery_beat.schedulers.DatabaseScheduler.tick", lambda self, *a, **k: 5.0
    )
    monkeypatch.setattr(
        "django_celery_beat.schedulers.DatabaseScheduler.__init__", lambda self, *a, **k: None
    )
    monkeypatch.setattr("trading.beat.overrides_refresh", lambda: None)
    scheduler = ExitCadenceScheduler()
    scheduler.cadence = CadenceDriver(send=lambda e: None, windows=lambda: DEFAULT_WINDOWS)
    from core import clock

    with clock.installed(clock.ShiftedClock(at(8, 54, 40), speed=60)):
        wait = scheduler.tick()  # the rush window opens at 08:55:00, 20 s of the clock away
    assert 0 < wait <= 20 / 60  # undivided, it would be the driver's 1 s idle recheck


@pytest.mark.django_db
def test_passes_never_overlap():
    cache.set(PASS_LOCK, "another pass", timeout=30)
    try:
        assert exit_pass_task.apply().get() == {"skipped": "another pass is running"}
    finally:
        cache.delete(PASS_LOCK)
    assert exit_pass_task.apply().get() == {"evaluated": 0, "exits": 0, "no_price": 0}
    assert cache.get(PASS_LOCK) is None


@pytest.mark.parametrize("zone", [SEOUL, dt.UTC], ids=["seoul", "utc"])
@pytest.mark.parametrize(
    "day, open_at",
    [
        (MONDAY, (9, 0)),
        (dt.date(2026, 11, 19), (10, 0)),  # CSAT day: the open moves to 10:00
        (dt.date(2027, 1, 4), (10, 0)),  # the first trading day of the year
    ],
)
def test_the_gap_prequeue_is_sent_once_ten_seconds_before_each_open(day, open_at, zone):
    # Beat hands in the server's clock, UTC on a server: 08:59:50 KST is 23:59:50 the day before.
    sent = []
    driver = PrequeueDriver(send=lambda: sent.append(now))
    now = at(8, 30, day=day).astimezone(zone)
    while now < at(11, 0, day=day):
        now += dt.timedelta(seconds=driver.tick(now)) + dt.timedelta(milliseconds=3)
    bell = at(*open_at, day=day)
    assert len(sent) == 1
    assert bell - dt.timedelta(seconds=10) <= sent[0] < bell - dt.timedelta(seconds=9.9)


def test_no_gap_prequeue_on_a_holiday_nor_after_the_opening_minute():
    sent = []
    driver = PrequeueDriver(send=lambda: sent.append(1))
    driver.tick(at(8, 59, 55, day=dt.date(2026, 12, 25)))  # Christmas: KRX is closed
    driver.tick(at(9, 1, 1))  # a beat started after the opening minute
    driver.tick(at(9, 5))
    assert sent == []
