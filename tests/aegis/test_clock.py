import datetime as dt

import pytest

from aegis import clock


def test_installed_clock_is_used_and_restored():
    at = dt.datetime(2026, 1, 2, 0, 59, 50, tzinfo=dt.timezone.utc)
    with clock.installed(clock.FixedClock(at)) as fixed:
        assert clock.now() == at
        assert clock.now_seoul().hour == 9 and clock.now_seoul().minute == 59
        fixed.advance(dt.timedelta(seconds=10))
        assert clock.now() == at + dt.timedelta(seconds=10)
    assert abs(clock.now() - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=5)


def test_fixed_clock_refuses_naive_datetimes():
    with pytest.raises(ValueError):
        clock.FixedClock(dt.datetime(2026, 1, 2, 9, 0))
