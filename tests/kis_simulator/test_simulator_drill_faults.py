"""The simulator's faults the drill needs (drill/): a 5xx carrying KIS's body, faults limited to
one path, a field garbled in an answer."""

from tests.support.simulator import (
    BALANCE,
    DAILY_CCLD,
    ORDER_CASH,
    balance_params,
    daily_params,
    give,
    kis_headers,
    order,
    send,
    token,
    tr,
)


def test_a_5xx_can_carry_a_kis_body_after_the_order_went_in(kis_sim):
    tok = token(kis_sim)
    kis_sim.control(
        "/_sim/faults",
        {
            "error_5xx_next": 1,
            "after": True,
            "error_status": 500,
            "error_msg_cd": "EGW00999",
            "error_msg1": "장애",
        },
    )
    failed = order(kis_sim, tok, side="BUY", qty=2)
    assert failed.status == 500
    assert failed.json == {"rt_cd": "1", "msg_cd": "EGW00999", "msg1": "장애"}
    assert [o["qty"] for o in kis_sim.book()["orders"]] == [2]  # booked all the same
    kis_sim.control("/_sim/faults", {"error_5xx_next": 1, "error_msg_cd": "", "after": False})
    plain = order(kis_sim, tok, side="BUY", qty=3)
    assert plain.status == 500 and not plain.body.startswith(b"{")  # the old shape
    assert [o["qty"] for o in kis_sim.book()["orders"]] == [2]  # before: never took effect


def test_faults_limited_to_a_path_leave_the_others_alone(kis_sim):
    tok = token(kis_sim)
    assert order(kis_sim, tok, side="BUY", qty=5).json["rt_cd"] == "0"
    kis_sim.control(
        "/_sim/faults", {"omit_next": 1000, "omit_field": "rmn_qty", "path": "inquire-daily-ccld"}
    )
    # An order is answered in full and consumes nothing.
    assert order(kis_sim, tok, side="BUY", qty=1).json["output"]["ODNO"]
    assert kis_sim.book()["faults"]["omit_next"] == 1000
    rows = send(
        kis_sim,
        "GET",
        DAILY_CCLD,
        headers=kis_headers(kis_sim, tok, tr(kis_sim, "TTTC0081R")),
        params=daily_params(kis_sim),
    ).json["output1"]
    assert len(rows) == 2 and all("rmn_qty" not in r and "ord_qty" in r for r in rows)
    assert kis_sim.book()["faults"]["omit_next"] == 999


def test_a_garbled_field(kis_sim):
    give(kis_sim, [("005930", 5, 70_000)])
    tok = token(kis_sim)
    kis_sim.control(
        "/_sim/faults",
        {
            "garble_next": 1,
            "garble_field": "hldg_qty",
            "garble_value": "1E+5000000",
            "path": "inquire-balance",
        },
    )
    headers = kis_headers(kis_sim, tok, tr(kis_sim, "TTTC8434R"))
    rows = send(kis_sim, "GET", BALANCE, headers=headers, params=balance_params(kis_sim)).json[
        "output1"
    ]
    assert rows and all(r["hldg_qty"] == "1E+5000000" for r in rows)
    again = send(kis_sim, "GET", BALANCE, headers=headers, params=balance_params(kis_sim)).json[
        "output1"
    ]
    assert all(r["hldg_qty"] == "5" for r in again)
    faults = [e["fault"] for e in kis_sim.book()["requests"] if e["path"] != ORDER_CASH]
    assert faults[-2:] == ["garble", None]


def test_bad_fault_settings_are_refused(kis_sim):
    import pytest

    for payload in ({"garble_field": ""}, {"path": "a b"}, {"error_msg_cd": 5}):
        with pytest.raises(AssertionError, match="HTTP 400"):
            kis_sim.control("/_sim/faults", payload)
