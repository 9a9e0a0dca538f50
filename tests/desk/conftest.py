import datetime as dt

import pytest

from core import clock


@pytest.fixture(autouse=True)
def seoul_afternoon():
    """The desk shows the Seoul day: its tests run on a clock at 14:00 in Seoul, whatever the
    hour of the run. On the wall clock, a run just after Seoul's midnight would put the test
    day's first minute bars on the day before, and the chart would show a part of them."""
    start = dt.datetime.combine(clock.now_seoul().date(), dt.time(14, 0), clock.SEOUL)
    with clock.installed(clock.ShiftedClock(start)):
        yield
