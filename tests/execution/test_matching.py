"""Which of KIS's daily orders an order in flight could be, as pure logic."""

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from core.clock import SEOUL
from execution.services.matching import could_be
from kis.client import DailyOrder

SENT = dt.datetime(2026, 12, 7, 10, 0, 0, tzinfo=SEOUL)


def row(**changes) -> DailyOrder:
    fields = dict(
        ord_dt="20261207",
        odno="0000000001",
        orgn_odno="",
        side="SELL",
        symbol="005930",
        ord_qty=5,
        ord_unpr=70_000,
        ord_tmd="100001",
        tot_ccld_qty=0,
        avg_prvs=Decimal(0),
        tot_ccld_amt=0,
        rmn_qty=5,
        cncl_yn="N",
        rjct_qty=0,
        ord_dvsn_cd="00",
        venue="KRX",
    )
    return DailyOrder(**fields | changes)


def order(venue: str = "KRX"):
    return SimpleNamespace(side="SELL", symbol="005930", qty=5, limit_price=70_000, venue=venue)


def matches(r: DailyOrder, o) -> bool:
    return could_be(r, order=o, since=SENT, until=SENT + dt.timedelta(seconds=13))


@pytest.mark.parametrize(
    "sent_to, shown_as, match",
    [
        ("KRX", "KRX", True),
        ("KRX", "NXT", False),  # a person's order on the other venue
        ("NXT", "KRX", False),
        ("NXT", "NXT", True),
        ("SOR", "KRX", True),  # routed: either venue may show it
        ("SOR", "NXT", True),
        ("KRX", "SOR", True),
        ("KRX", "", True),  # KIS did not say: the other fields decide
    ],
)
def test_a_row_of_another_venue_is_not_the_order(sent_to, shown_as, match):
    assert matches(row(venue=shown_as), order(sent_to)) is match


def test_the_other_fields_still_decide():
    assert matches(row(), order())
    assert not matches(row(ord_qty=4), order())
    assert not matches(row(ord_unpr=69_900), order())
    assert not matches(row(orgn_odno="0000000000"), order())
    assert not matches(row(ord_tmd="095959"), order())
