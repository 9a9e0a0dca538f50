"""The calendar's upkeep: special days a person enters in the admin override the holiday library
for their date, in every process within a minute; a daily check against KIS's holiday inquiry
(the simulator's) alerts each day they disagree."""

import datetime as dt

import pytest
from django.urls import reverse

from core import clock
from execution.models import Alert
from kis.client import KisClient
from kis.errors import KisProtocolError
from market import calendar as market_calendar
from market.calendar_sync import overrides_refresh
from market.models import SpecialDay
from trading.calendar_sync import calendar_check

TUESDAY = dt.date(2026, 11, 24)
P = market_calendar.Phase


@pytest.fixture(autouse=True)
def no_special_days_left():
    yield
    market_calendar.overrides_set({})


def seoul(day, hh, mm):
    return dt.datetime.combine(day, dt.time(hh, mm), clock.SEOUL)


def test_a_special_day_overrides_the_library_for_its_date():
    assert market_calendar.is_trading_day(TUESDAY)
    wednesday = TUESDAY + dt.timedelta(days=1)
    assert market_calendar.overrides_set(
        {
            TUESDAY: market_calendar.Override(closed=True, note="an extra closure"),
            wednesday: market_calendar.Override(closed=False, open=dt.time(10, 0)),
        }
    )
    assert not market_calendar.is_trading_day(TUESDAY)
    assert market_calendar.session(TUESDAY) is None
    assert market_calendar.moment(seoul(TUESDAY, 10, 0)).phase is P.CLOSED
    late = market_calendar.session(wednesday)
    assert (late.open, late.close) == (seoul(wednesday, 10, 0), seoul(wednesday, 15, 30))
    assert market_calendar.moment(seoul(wednesday, 9, 15)).phase is P.CLOSED
    assert market_calendar.moment(seoul(wednesday, 9, 45)).phase is P.OPENING_AUCTION
    # Trading days held skip the closure too.
    assert market_calendar.trading_days_between(TUESDAY - dt.timedelta(days=1), wednesday) == 1
    assert not market_calendar.overrides_set(dict(market_calendar._overrides))  # unchanged


@pytest.mark.django_db
def test_the_admin_refuses_a_closed_day_with_times_and_a_saved_day_applies_at_once(admin_client):
    url = reverse("admin:market_specialday_add")
    refused = admin_client.post(
        url, {"day": "2026-11-24", "closed": "on", "open_at": "10:00", "note": "x"}
    )
    assert (
        refused.status_code == 200
        and "A closed day has no session times" in refused.content.decode()
    )
    assert not SpecialDay.objects.exists()
    saved = admin_client.post(url, {"day": "2026-11-24", "closed": "on", "note": "closure"})
    assert saved.status_code == 302
    assert market_calendar.session(TUESDAY) is None  # this process, at once
    SpecialDay.objects.all().delete()
    assert market_calendar.session(TUESDAY) is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_day_kis_says_is_closed_is_alerted_once(kis_sim, kis_client):
    monday = dt.date(2026, 11, 23)
    closure = dt.date(2026, 11, 26)  # a Thursday the library says is open
    kis_sim.control("/_sim/day", {"closed": [closure.isoformat()]})
    assert calendar_check(broker=kis_client, today=monday) == [
        "2026-11-26: KIS says closed, the calendar open"
    ]
    calendar_check(broker=kis_client, today=monday)
    [alert] = Alert.objects.filter(subject="calendar")
    assert alert.severity == "CRITICAL" and "2026-11-26" in alert.message
    # Entered in the admin as a special day: the calendar agrees again.
    SpecialDay.objects.create(day=closure, closed=True, note="announced by KRX")
    overrides_refresh(force=True)
    assert calendar_check(broker=kis_client, today=monday) == []


class HolidayRows(KisClient):
    """KIS's holiday answer as the raw rows below; the client's own parsing reads them."""

    def __init__(self, rows):
        self.rows = rows

    def _call(self, **_):
        return {"output": self.rows}, {}


@pytest.mark.parametrize(
    "row",
    [
        {"bass_dt": "20261124"},  # no opnd_yn
        {"bass_dt": "20261124", "opnd_yn": ""},
        {"bass_dt": "2026-11-24", "opnd_yn": "Y"},
        {"opnd_yn": "Y"},
    ],
)
def test_a_holiday_row_the_ledger_cannot_read_is_a_protocol_error(row):
    with pytest.raises(KisProtocolError):
        HolidayRows([{"bass_dt": "20261123", "opnd_yn": "Y"}, row]).market_days(start=TUESDAY)


def test_holiday_rows_read_in_upper_case_too():
    [day] = HolidayRows([{"BASS_DT": "20261124", "OPND_YN": "N"}]).market_days(start=TUESDAY)
    assert (day.day, day.open) == (TUESDAY, False)
