"""Strict reading of KIS answers (pure logic, dicts in): every field the ledger depends on is
required and bounded, anything else a KisProtocolError naming the field, never a default."""

from decimal import Decimal
from types import SimpleNamespace

import pytest

from kis import protocol
from kis.client import (
    BadDailyOrder,
    DailyOrder,
    KisClient,
    balance_from,
    daily_order_from,
    holding_from,
    order_ack_from,
)
from kis.errors import KisAmbiguousOutcome, KisProtocolError

ROW = {
    "ord_dt": "20261207",
    "ord_gno_brno": "06010",
    "odno": "0000000007",
    "orgn_odno": "",
    "sll_buy_dvsn_cd": "02",
    "pdno": "005930",
    "ord_qty": "10",
    "ord_unpr": "71000",
    "ord_tmd": "090001",
    "tot_ccld_qty": "4",
    "avg_prvs": "71000",
    "tot_ccld_amt": "284000",
    "rmn_qty": "6",
    "cncl_yn": "N",
    "rjct_qty": "0",
    "ord_dvsn_cd": "00",
}
HOLDING = {
    "pdno": "005930",
    "prdt_name": "삼성전자",
    "hldg_qty": "10",
    "ord_psbl_qty": "7",
    "pchs_avg_pric": "71000.5000",
    "prpr": "71500",
}

BAD_NUMBERS = [
    "",
    " ",
    "Infinity",
    "-Infinity",
    "NaN",
    "1E+5000000",
    "1e3",
    "12.9",
    "-1",
    "+5",
    "0x10",
    "1_000",
    "１２",
    "1,000",
    str(10**12),
    "9" * 400,
    None,
]
LEDGER_COUNTS = ["ord_qty", "tot_ccld_qty", "tot_ccld_amt", "rmn_qty", "rjct_qty", "ord_unpr"]


def test_a_well_formed_row_is_read():
    order = daily_order_from(ROW)
    assert order == DailyOrder(
        ord_dt="20261207",
        odno="0000000007",
        orgn_odno="",
        side="BUY",
        symbol="005930",
        ord_qty=10,
        ord_unpr=71000,
        ord_tmd="090001",
        tot_ccld_qty=4,
        avg_prvs=Decimal("71000"),
        tot_ccld_amt=284000,
        rmn_qty=6,
        cncl_yn="N",
        rjct_qty=0,
        ord_dvsn_cd="00",
        org_no="06010",
    )
    assert (
        daily_order_from(
            ROW | {"sll_buy_dvsn_cd": "01", "avg_prvs": "71000.25", "orgn_odno": "0000000003"}
        ).side
        == "SELL"
    )


@pytest.mark.parametrize(
    "name",
    [
        "rmn_qty",
        "ord_qty",
        "ord_tmd",
        "odno",
        "pdno",
        "tot_ccld_qty",
        "tot_ccld_amt",
        "rjct_qty",
        "avg_prvs",
        "sll_buy_dvsn_cd",
        "ord_dt",
        "ord_unpr",
    ],
)
def test_a_missing_ledger_field_is_a_protocol_error_naming_it(name):
    row = {k: v for k, v in ROW.items() if k != name}
    with pytest.raises(KisProtocolError, match=name):
        daily_order_from(row)


@pytest.mark.parametrize("name", LEDGER_COUNTS)
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_a_bad_count_is_a_protocol_error_naming_it(name, value):
    with pytest.raises(KisProtocolError, match=name):
        daily_order_from(ROW | {name: value})


@pytest.mark.parametrize(
    "value",
    ["Infinity", "NaN", "1E+5000000", "-1", "-0.5", "1.2.3", ".5", "12.", "", None, str(10**12)],
)
def test_a_bad_average_is_a_protocol_error(value):
    with pytest.raises(KisProtocolError, match="avg_prvs"):
        daily_order_from(ROW | {"avg_prvs": value})


@pytest.mark.parametrize(
    "value", ["", "9001", "0900011", "250000", "096000", "090060", "0900a1", "-90001", None]
)
def test_ord_tmd_is_hhmmss(value):
    with pytest.raises(KisProtocolError, match="ord_tmd"):
        daily_order_from(ROW | {"ord_tmd": value})


@pytest.mark.parametrize(
    "name,value",
    [
        ("odno", ""),
        ("odno", "00A1"),
        ("odno", "1" * 21),
        ("orgn_odno", "x1"),
        ("pdno", "5930"),
        ("pdno", "005930 X"),
        ("pdno", "00593a"),
        ("sll_buy_dvsn_cd", "03"),
        ("ord_dt", "2026-12-07"),
    ],
)
def test_identifiers_are_well_formed(name, value):
    with pytest.raises(KisProtocolError, match=name):
        daily_order_from(ROW | {name: value})


def test_surrounding_blanks_and_leading_zeros_are_fine():
    order = daily_order_from(ROW | {"rmn_qty": " 0006 ", "ord_qty": 10})
    assert (order.rmn_qty, order.ord_qty) == (6, 10)


@pytest.mark.parametrize("name", ["hldg_qty", "ord_psbl_qty", "pchs_avg_pric", "pdno"])
def test_a_holding_without_its_ledger_fields_is_refused(name):
    with pytest.raises(KisProtocolError, match=name):
        holding_from({k: v for k, v in HOLDING.items() if k != name})


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_a_bad_holding_qty_is_refused(value):
    with pytest.raises(KisProtocolError, match="hldg_qty"):
        holding_from(HOLDING | {"hldg_qty": value})


def test_a_holding_is_read():
    h = holding_from(HOLDING)
    assert (h.symbol, h.hldg_qty, h.ord_psbl_qty, h.pchs_avg_pric, h.prpr) == (
        "005930",
        10,
        7,
        Decimal("71000.5000"),
        71500,
    )


def test_the_deposit_is_required_and_may_be_negative():
    assert balance_from([], {"prvs_rcdl_excc_amt": "-5"}).prvs_rcdl_excc_amt == -5
    with pytest.raises(KisProtocolError, match="prvs_rcdl_excc_amt"):
        balance_from([], {})
    with pytest.raises(KisProtocolError, match="dnca_tot_amt"):
        balance_from([], {"prvs_rcdl_excc_amt": "1", "dnca_tot_amt": "1E+5000000"})


def test_an_order_ack_without_a_readable_odno_is_an_unknown_outcome():
    ack = order_ack_from(
        {"odno": "0001569157", "krx_fwdg_ord_orgno": "06010", "ord_tmd": "155211"}, new_order=True
    )
    assert (ack.odno, ack.org_no) == ("0001569157", "06010")
    for out in ({}, {"odno": ""}, {"odno": "garbled!"}):
        with pytest.raises(KisAmbiguousOutcome):
            order_ack_from(out, new_order=True)


class _Pages(KisClient):
    """Only the paging replaced: the rows below, one page."""

    config = SimpleNamespace(flavour=protocol.Flavour.REAL)  # a real account: every venue

    def __init__(self, rows):
        self.rows = rows

    def _account(self):
        return {}

    def _pages(self, **_):
        yield {"output1": self.rows}


def test_daily_orders_raise_on_a_bad_row_or_keep_it_in_place():
    import datetime as dt

    day = dt.date(2026, 12, 7)
    rows = [
        ROW,
        ROW | {"odno": "0000000008", "rmn_qty": None},
        ROW | {"odno": "bad odno", "ord_qty": "1"},
        ROW | {"odno": "0000000009"},
    ]
    with pytest.raises(KisProtocolError, match="rmn_qty"):
        _Pages(rows).daily_orders(start=day, end=day)
    kept = _Pages(rows).daily_orders(start=day, end=day, keep_bad=True)
    assert [type(k) for k in kept] == [DailyOrder, BadDailyOrder, BadDailyOrder, DailyOrder]
    assert kept[1].odno == "0000000008" and "rmn_qty" in kept[1].reason
    assert kept[2] == BadDailyOrder(odno="", reason=kept[2].reason) and "odno" in kept[2].reason
    assert kept[3].odno == "0000000009"
