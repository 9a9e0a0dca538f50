import datetime as dt

import pytest

from core import clock


def test_installed_clock_is_used_and_restored():
    at = dt.datetime(2026, 1, 2, 0, 59, 50, tzinfo=dt.UTC)
    with clock.installed(clock.FixedClock(at)) as fixed:
        assert clock.now() == at
        assert clock.now_seoul().hour == 9 and clock.now_seoul().minute == 59
        fixed.advance(dt.timedelta(seconds=10))
        assert clock.now() == at + dt.timedelta(seconds=10)
    assert abs(clock.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_fixed_clock_refuses_naive_datetimes():
    with pytest.raises(ValueError):
        clock.FixedClock(dt.datetime(2026, 1, 2, 9, 0))


def test_a_shifted_clock_runs_from_its_start_at_its_speed(monkeypatch):
    import time

    real = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: real[0])
    start = dt.datetime(2026, 11, 24, 8, 58, 30, tzinfo=clock.SEOUL)
    shifted = clock.ShiftedClock(start, origin=real[0] - 2, speed=10)
    assert shifted.now() == start + dt.timedelta(seconds=20)
    real[0] += 1.5
    assert shifted.now() == start + dt.timedelta(seconds=35)


def test_processes_given_the_same_environment_share_the_shifted_clock():
    start = dt.datetime(2026, 11, 24, 8, 58, 30, tzinfo=clock.SEOUL)
    first = clock.ShiftedClock(start, speed=4)
    second = clock.from_environ(first.environ())
    assert isinstance(second, clock.ShiftedClock)
    assert (second.start, second.origin, second.speed) == (start, first.origin, 4)
    assert abs(second.now() - first.now()) < dt.timedelta(milliseconds=50)


def test_without_a_start_the_environment_gives_the_system_clock():
    assert isinstance(clock.from_environ({}), clock.SystemClock)
    assert isinstance(clock.from_environ({"AEGIS_CLOCK_START": " "}), clock.SystemClock)


@pytest.mark.parametrize(
    "environ",
    [
        {"AEGIS_CLOCK_START": "2026-11-24T09:00:00"},  # no offset
        {"AEGIS_CLOCK_START": "tomorrow"},
        {"AEGIS_CLOCK_START": "2026-11-24T09:00:00+09:00", "AEGIS_CLOCK_SPEED": "0"},
        {"AEGIS_CLOCK_START": "2026-11-24T09:00:00+09:00", "AEGIS_CLOCK_ORIGIN": "noon"},
    ],
)
def test_a_bad_clock_environment_is_refused_by_name(environ):
    with pytest.raises(ValueError, match="AEGIS_CLOCK"):
        clock.from_environ(environ)
