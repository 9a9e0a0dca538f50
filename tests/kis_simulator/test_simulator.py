"""The KIS simulator over the wire, spoken to as KIS's own samples speak (KIS.md): lower-case
header names, upper-case POST body keys and query parameters, every number a string.

Only http.client and the `websockets` library talk to it here, never Aegis's KIS client, so these
tests pin the simulator to KIS's protocol rather than to our client's reading of it.
"""

import asyncio
import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import websockets
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kis.protocol import NOTICE_FIELDS, TRADE_FIELDS
from tests.support.simulator import (
    BALANCE,
    DAILY_CCLD,
    ORDER_CASH,
    Reply,
    balance_params,
    daily_params,
    give,
    kis_headers,
    order,
    send,
    token,
    tr,
)

ROOT = Path(__file__).resolve().parents[2]
RVSECNCL = "/uapi/domestic-stock/v1/trading/order-rvsecncl"
PRICE = "/uapi/domestic-stock/v1/quotations/inquire-price"
ASKING = "/uapi/domestic-stock/v1/quotations/inquire-asking-price-exp-ccn"


# --- a bare HTTP client (more in tests/support/simulator.py) ----------------------------------
def revise(
    sim, tok, *, odno: str, cancel: bool, qty: int = 0, price: int = 0, orgno: str = "06010"
) -> Reply:
    body = {
        "CANO": sim.cano,
        "ACNT_PRDT_CD": sim.acnt_prdt_cd,
        "KRX_FWDG_ORD_ORGNO": orgno,
        "ORGN_ODNO": odno,
        "ORD_DVSN": "00",
        "RVSE_CNCL_DVSN_CD": "02" if cancel else "01",
        "ORD_QTY": str(qty),
        "ORD_UNPR": str(price),
        "QTY_ALL_ORD_YN": "N" if qty else "Y",
        "EXCG_ID_DVSN_CD": "KRX",
    }
    return send(
        sim, "POST", RVSECNCL, headers=kis_headers(sim, tok, tr(sim, "TTTC0013U")), body=body
    )


def daily(sim, tok, **kw) -> list[dict]:
    reply = send(
        sim,
        "GET",
        DAILY_CCLD,
        headers=kis_headers(sim, tok, tr(sim, "TTTC0081R")),
        params=daily_params(sim, **kw),
    )
    assert reply.status == 200 and reply.json["rt_cd"] == "0", reply.body
    return reply.json["output1"]


def holdings(sim, tok) -> dict[str, dict]:
    reply = send(
        sim,
        "GET",
        BALANCE,
        headers=kis_headers(sim, tok, tr(sim, "TTTC8434R")),
        params=balance_params(sim),
    )
    assert reply.status == 200 and reply.json["rt_cd"] == "0", reply.body
    return {row["pdno"]: row for row in reply.json["output1"]}


def quote(sim, tok, pdno: str = "005930", path: str = PRICE, tr_id: str = "FHKST01010100") -> Reply:
    return send(
        sim,
        "GET",
        path,
        headers=kis_headers(sim, tok, tr_id),
        params={"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": pdno},
    )


def all_strings(value) -> bool:
    if isinstance(value, dict):
        return all(all_strings(v) for v in value.values())
    if isinstance(value, list):
        return all(all_strings(v) for v in value)
    return isinstance(value, str)


# --- KIS's sample requests and KIS's answers --------------------------------------------------
def test_a_token_as_kis_issues_it(kis_sim):
    reply = send(
        kis_sim,
        "POST",
        "/oauth2/tokenP",
        headers={"content-type": "application/json"},
        body={
            "grant_type": "client_credentials",
            "appkey": kis_sim.appkey,
            "appsecret": kis_sim.appsecret,
        },
    )
    data = reply.json
    assert reply.status == 200 and set(data) == {
        "access_token",
        "access_token_token_expired",
        "token_type",
        "expires_in",
    }
    assert data["token_type"] == "Bearer" and 86_390 <= data["expires_in"] <= 86_400
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["access_token_token_expired"])
    assert len(data["access_token"]) > 100
    assert sum(kis_sim.book()["token_issuance"].values()) == 1


def test_kis_sample_requests_succeed_in_kis_shapes(kis_sim):
    sim = kis_sim
    tok = token(sim)
    give(sim, [("005930", 10, 70_000)])

    buy = order(sim, tok, side="BUY", qty=3)
    assert buy.status == 200
    assert buy.json["rt_cd"] == "0" and buy.json["msg_cd"] == "APBK0013"
    out = buy.json["output"]
    assert set(out) == {"KRX_FWDG_ORD_ORGNO", "ODNO", "ORD_TMD"}
    assert out["KRX_FWDG_ORD_ORGNO"] == "06010" and re.fullmatch(r"\d{10}", out["ODNO"])
    assert re.fullmatch(r"\d{6}", out["ORD_TMD"])
    assert buy.header("tr_id") == "TTTC0012U" and buy.header("tr_cont") == ""
    assert re.fullmatch(r"[0-9a-f]{32}", buy.header("gt_uid"))  # header names in lower case
    sim.control("/_sim/step", {"pdno": "005930", "steps": 1})

    sell = order(sim, tok, side="SELL", qty=2, price=90_000)
    assert sell.json["rt_cd"] == "0"
    cancel = revise(sim, tok, odno=sell.json["output"]["ODNO"], cancel=True)
    assert cancel.json["rt_cd"] == "0" and set(cancel.json["output"]) == {
        "krx_fwdg_ord_orgno",
        "odno",
        "ord_tmd",
    }  # order-change output case: UNCONFIRMED

    for reply in (
        quote(sim, tok),
        quote(sim, tok, path=ASKING, tr_id="FHKST01010200"),
        send(
            sim,
            "GET",
            BALANCE,
            headers=kis_headers(sim, tok, "TTTC8434R"),
            params=balance_params(sim),
        ),
        send(
            sim,
            "GET",
            DAILY_CCLD,
            headers=kis_headers(sim, tok, "TTTC0081R"),
            params=daily_params(sim),
        ),
    ):
        assert reply.status == 200 and reply.json["rt_cd"] == "0", reply.body
        assert all_strings(reply.json), "every number goes out as a string"
        assert reply.header("tr_cont") in ("", "D", "F")

    price = quote(sim, tok).json["output"]
    assert (price["stck_sdpr"], price["stck_mxpr"], price["stck_llam"], price["aspr_unit"]) == (
        "71000",
        "92300",
        "49700",
        "100",
    )
    assert price["prdy_vrss_sign"] in "12345"
    book = quote(sim, tok, path=ASKING, tr_id="FHKST01010200").json
    assert int(book["output1"]["askp1"]) > int(book["output1"]["bidp1"]) > 0
    assert "antc_cnpr" in book["output2"]

    bal = send(
        sim, "GET", BALANCE, headers=kis_headers(sim, tok, "TTTC8434R"), params=balance_params(sim)
    ).json
    assert isinstance(bal["output2"], list) and len(bal["output2"]) == 1
    (row,) = bal["output1"]
    assert (row["pdno"], row["hldg_qty"], row["ord_psbl_qty"]) == ("005930", "13", "13")
    assert {"dnca_tot_amt", "nxdy_excc_amt", "prvs_rcdl_excc_amt", "tot_evlu_amt"} <= set(
        bal["output2"][0]
    )

    rows = daily(sim, tok)
    assert [r["odno"] for r in rows] == sorted((r["odno"] for r in rows), reverse=True)
    first = next(r for r in rows if r["odno"] == out["ODNO"])
    assert (
        first["sll_buy_dvsn_cd"],
        first["ord_qty"],
        first["tot_ccld_qty"],
        first["rmn_qty"],
        first["pdno"],
    ) == ("02", "3", "3", "0", "005930")
    cancel_row = next(r for r in rows if r["odno"] == cancel.json["output"]["odno"])
    assert cancel_row["orgn_odno"] == sell.json["output"]["ODNO"] and cancel_row["cncl_yn"] == "Y"


def test_hashkey_signs_the_body_and_a_wrong_one_is_refused(kis_sim):
    tok = token(kis_sim)
    body = {
        "CANO": kis_sim.cano,
        "ACNT_PRDT_CD": "01",
        "PDNO": "005930",
        "ORD_DVSN": "01",
        "ORD_QTY": "1",
        "ORD_UNPR": "0",
    }
    hashed = send(
        kis_sim,
        "POST",
        "/uapi/hashkey",
        body=body,
        headers={
            "content-type": "application/json; charset=utf-8",
            "appkey": kis_sim.appkey,
            "appsecret": kis_sim.appsecret,
        },
    ).json
    assert hashed["BODY"] == body and re.fullmatch(r"[0-9a-f]{64}", hashed["HASH"])
    for hashkey, ok in ((hashed["HASH"], True), ("0" * 64, False)):
        reply = send(
            kis_sim,
            "POST",
            ORDER_CASH,
            body=body,
            headers=kis_headers(kis_sim, tok, "TTTC0012U", hashkey=hashkey),
        )
        assert (reply.json["rt_cd"] == "0") is ok


def test_the_websocket_approval_key_needs_secretkey(kis_sim):
    headers = {"content-type": "application/json; charset=utf-8"}
    body = {"grant_type": "client_credentials", "appkey": kis_sim.appkey}
    wrong = send(
        kis_sim,
        "POST",
        "/oauth2/Approval",
        headers=headers,
        body=body | {"appsecret": kis_sim.appsecret},
    )
    assert wrong.status >= 400 and "error_code" in wrong.json
    right = send(
        kis_sim,
        "POST",
        "/oauth2/Approval",
        headers=headers,
        body=body | {"secretkey": kis_sim.appsecret},
    )
    assert right.status == 200 and len(right.json["approval_key"]) == 36


# --- bad input: KIS-style errors, never a stack trace ----------------------------------------
def _without(headers: dict, name: str) -> dict:
    return {k: v for k, v in headers.items() if k != name}


ORDER_BODY = {
    "CANO": "50000001",
    "ACNT_PRDT_CD": "01",
    "PDNO": "005930",
    "ORD_DVSN": "01",
    "ORD_QTY": "1",
    "ORD_UNPR": "0",
}
BAD_INPUT = {
    # name: (headers from the good ones, body, status, msg_cd)
    "no content-type": (lambda h: _without(h, "content-type"), ORDER_BODY, 400, "OPSQ2001"),
    "no authorization": (lambda h: _without(h, "authorization"), ORDER_BODY, 500, "EGW00121"),
    "unknown token": (
        lambda h: h | {"authorization": "Bearer forged"},
        ORDER_BODY,
        500,
        "EGW00121",
    ),
    "no appkey": (lambda h: _without(h, "appkey"), ORDER_BODY, 500, "EGW00103"),
    "wrong appsecret": (lambda h: h | {"appsecret": "x" * 180}, ORDER_BODY, 500, "EGW00105"),
    "no tr_id": (lambda h: _without(h, "tr_id"), ORDER_BODY, 400, "OPSQ2001"),
    "paper tr_id on real": (lambda h: h | {"tr_id": "VTTC0012U"}, ORDER_BODY, 400, "OPSQ0002"),
    "tr_id of another path": (lambda h: h | {"tr_id": "TTTC8434R"}, ORDER_BODY, 400, "OPSQ0002"),
    "no custtype": (lambda h: _without(h, "custtype"), ORDER_BODY, 400, "OPSQ2001"),
    "malformed JSON": (lambda h: h, '{"CANO": "50000001",', 400, "OPSQ1002"),
    "JSON not an object": (lambda h: h, ["CANO"], 400, "OPSQ1002"),
    "missing field": (
        lambda h: h,
        {k: v for k, v in ORDER_BODY.items() if k != "ORD_QTY"},
        400,
        "OPSQ2001",
    ),
    # KIS: "POST API의 경우 BODY값의 key값들을 대문자로" — lower-case keys are missing keys.
    "lower-case keys": (
        lambda h: h,
        {k.lower(): v for k, v in ORDER_BODY.items()},
        400,
        "OPSQ2001",
    ),
    "number not string": (lambda h: h, ORDER_BODY | {"ORD_QTY": 1}, 400, "OPSQ2001"),
    "not a number": (lambda h: h, ORDER_BODY | {"ORD_QTY": "one"}, 400, "OPSQ2001"),
    "wrong account": (lambda h: h, ORDER_BODY | {"CANO": "99999999"}, 400, "OPSQ2000"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_order_input_gets_a_kis_error(kis_sim, case):
    tok = token(kis_sim)
    mutate, body, status, msg_cd = BAD_INPUT[case]
    reply = send(
        kis_sim,
        "POST",
        ORDER_CASH,
        body=body,
        headers=mutate(kis_headers(kis_sim, tok, "TTTC0012U")),
    )
    assert (reply.status, reply.json["rt_cd"], reply.json["msg_cd"]) == (status, "1", msg_cd)
    assert reply.header("Content-Type").startswith("application/json")
    for leak in (b"Traceback", b"<html", kis_sim.appsecret.encode(), tok.encode()):
        assert leak not in reply.body
    assert kis_sim.book()["orders"] == []


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "msg_cd"),
    [
        ("GET", PRICE, {"FID_COND_MRKT_DIV_CODE": "J"}, 400, "OPSQ2001"),
        ("GET", DAILY_CCLD, {"CANO": "50000001", "ACNT_PRDT_CD": "01"}, 400, "OPSQ2001"),
        ("GET", "/uapi/domestic-stock/v1/trading/no-such-thing", {}, 404, "OPSQ0001"),
        ("GET", ORDER_CASH, {}, 405, "OPSQ0001"),
    ],
)
def test_bad_queries_get_kis_errors(kis_sim, method, path, params, status, msg_cd):
    tr_id = "TTTC0081R" if path == DAILY_CCLD else "FHKST01010100"
    reply = send(
        kis_sim, method, path, params=params, headers=kis_headers(kis_sim, token(kis_sim), tr_id)
    )
    assert (reply.status, reply.json["rt_cd"], reply.json["msg_cd"]) == (status, "1", msg_cd)


def assert_kis_shaped(reply: Reply, secrets_: tuple[str, ...] = ()) -> None:
    """A JSON answer of KIS's, never a stack trace, a HTML page or a credential."""
    assert reply.header("Content-Type").startswith("application/json"), reply.body
    for leak in (b"Traceback", b"<html", b"internal error", *(s.encode() for s in secrets_)):
        assert leak not in reply.body, reply.body


TOKEN_BODY = {"grant_type": "client_credentials", "appkey": "", "appsecret": ""}
BAD_TOKEN_BODIES = {
    "not JSON": "grant_type=client_credentials",
    "not UTF-8": b"\xff\xfe{}",
    "JSON not an object": ["grant_type", "client_credentials"],
    "empty object": {},
    "no appkey": {"grant_type": "client_credentials", "appsecret": "s"},
    "appkey not a string": TOKEN_BODY | {"appkey": 12, "appsecret": "s"},
    "appsecret a list": TOKEN_BODY | {"appkey": "k", "appsecret": ["s"]},
    "wrong grant_type": TOKEN_BODY | {"grant_type": "password", "appkey": "k", "appsecret": "s"},
}


@pytest.mark.parametrize("case", sorted(BAD_TOKEN_BODIES))
def test_bad_token_requests_get_an_oauth_error_and_tokens_are_still_issued(kis_sim, case):
    body = BAD_TOKEN_BODIES[case]
    reply = send(
        kis_sim,
        "POST",
        "/oauth2/tokenP",
        body=body,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert (reply.status, reply.json["error_code"]) == (400, "EGW00205"), reply.body
    assert reply.json["error_description"]
    assert_kis_shaped(reply)
    assert token(kis_sim)  # still serving; and nothing was issued before
    assert sum(kis_sim.book()["token_issuance"].values()) == 1


RVSECNCL_BODY = {
    "CANO": "50000001",
    "ACNT_PRDT_CD": "01",
    "KRX_FWDG_ORD_ORGNO": "06010",
    "ORGN_ODNO": "",
    "ORD_DVSN": "00",
    "RVSE_CNCL_DVSN_CD": "02",
    "ORD_QTY": "0",
    "ORD_UNPR": "0",
    "QTY_ALL_ORD_YN": "Y",
}
BAD_RVSECNCL = {
    # name: (body given the original's ODNO, status, msg_cd)
    "malformed JSON": (lambda odno: '{"CANO": "50000001", "ORGN_ODNO": ', 400, "OPSQ1002"),
    "JSON not an object": (lambda odno: [odno], 400, "OPSQ1002"),
    "missing QTY_ALL_ORD_YN": (
        lambda odno: (
            {k: v for k, v in RVSECNCL_BODY.items() if k != "QTY_ALL_ORD_YN"} | {"ORGN_ODNO": odno}
        ),
        400,
        "OPSQ2001",
    ),
    "number not string": (
        lambda odno: RVSECNCL_BODY | {"ORGN_ODNO": odno, "ORD_QTY": 0},
        400,
        "OPSQ2001",
    ),
    "ORD_QTY not a number": (
        lambda odno: RVSECNCL_BODY | {"ORGN_ODNO": odno, "QTY_ALL_ORD_YN": "N", "ORD_QTY": "all"},
        400,
        "OPSQ2001",
    ),
    "RVSE_CNCL_DVSN_CD 03": (
        lambda odno: RVSECNCL_BODY | {"ORGN_ODNO": odno, "RVSE_CNCL_DVSN_CD": "03"},
        400,
        "OPSQ2001",
    ),
    "QTY_ALL_ORD_YN X": (
        lambda odno: RVSECNCL_BODY | {"ORGN_ODNO": odno, "QTY_ALL_ORD_YN": "X"},
        400,
        "OPSQ2001",
    ),
    "wrong account": (
        lambda odno: RVSECNCL_BODY | {"ORGN_ODNO": odno, "CANO": "99999999"},
        400,
        "OPSQ2000",
    ),
    "modify with an unknown ORD_DVSN": (
        lambda odno: (
            RVSECNCL_BODY
            | {"ORGN_ODNO": odno, "RVSE_CNCL_DVSN_CD": "01", "ORD_DVSN": "99", "ORD_UNPR": "70000"}
        ),
        200,
        "APBK9908",
    ),
    "unknown original order": (
        lambda odno: RVSECNCL_BODY | {"ORGN_ODNO": "not-an-odno"},
        200,
        "APBK9906",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RVSECNCL))
def test_bad_cancel_and_modify_bodies_get_a_kis_error_and_change_nothing(kis_sim, case):
    tok = token(kis_sim)
    odno = order(kis_sim, tok, side="BUY", qty=3, price=60_000).json["output"]["ODNO"]
    make, status, msg_cd = BAD_RVSECNCL[case]
    reply = send(
        kis_sim, "POST", RVSECNCL, body=make(odno), headers=kis_headers(kis_sim, tok, "TTTC0013U")
    )
    assert (reply.status, reply.json["rt_cd"], reply.json["msg_cd"]) == (status, "1", msg_cd), (
        reply.body
    )
    assert_kis_shaped(reply, (kis_sim.appsecret, tok))
    assert [(o["odno"], o["remaining"]) for o in kis_sim.book()["orders"]] == [(odno, 3)]
    assert revise(kis_sim, tok, odno=odno, cancel=True).json["rt_cd"] == "0"  # still serving
    assert [o["remaining"] for o in kis_sim.book()["orders"] if o["odno"] == odno] == [0]


def test_control_errors_are_json_too(kis_sim):
    reply = send(kis_sim, "POST", "/_sim/prices", body={"pdno": "005930", "price": 71_050})
    assert reply.status == 400 and "tick" in reply.json["error"]


def test_the_simulated_day_runs_from_the_clock_it_is_given(kis_sim):
    tok = token(kis_sim)
    moved = kis_sim.control("/_sim/clock", {"start": "2026-11-24T09:00:05+09:00", "speed": 1})
    assert moved["now"].startswith("2026-11-24T09:00:0")
    assert order(kis_sim, tok, side="BUY", qty=1).status == 200
    bad = send(kis_sim, "POST", "/_sim/clock", body={"start": "2026-11-24T09:00:05"})
    assert bad.status == 400 and "clock" in bad.json["error"]  # no offset: refused, unchanged
    kis_sim.control("/_sim/clock", method="DELETE")
    assert order(kis_sim, tok, side="BUY", qty=1).status == 200
    first, second = kis_sim.book()["orders"]
    assert first["ord_dt"] == "20261124" and "090005" <= first["ord_tmd"] < "090100"
    assert second["ord_dt"] == time.strftime("%Y%m%d", time.gmtime(time.time() + 9 * 3600))


# --- tokens and the rate limit -----------------------------------------------------------------
def test_one_token_a_minute_and_the_same_token_within_six_hours(kis_sim):
    first = token(kis_sim)
    again = send(
        kis_sim,
        "POST",
        "/oauth2/tokenP",
        headers={"content-type": "application/json"},
        body={
            "grant_type": "client_credentials",
            "appkey": kis_sim.appkey,
            "appsecret": kis_sim.appsecret,
        },
    )
    assert again.status == 403
    assert again.json == {
        "error_code": "EGW00133",
        "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
    }
    kis_sim.control("/_sim/limits", {"token_interval_s": 0.2})
    time.sleep(0.3)
    assert token(kis_sim) == first
    assert sum(kis_sim.book()["token_issuance"].values()) == 2  # every issuance counts
    kis_sim.control("/_sim/limits", {"token_interval_s": 0, "token_reuse_s": 0})
    fresh = token(kis_sim)
    assert fresh != first
    assert quote(kis_sim, first).status == 200  # the older token stays valid until it expires


def test_expired_invalid_and_revoked_tokens(kis_sim):
    kis_sim.control("/_sim/limits", {"token_ttl_s": 0.3, "token_interval_s": 0})
    tok = token(kis_sim)
    assert quote(kis_sim, tok).status == 200
    time.sleep(0.4)
    expired = quote(kis_sim, tok)
    assert (expired.status, expired.json["rt_cd"], expired.json["msg_cd"]) == (500, "1", "EGW00123")
    kis_sim.control("/_sim/limits", {"token_ttl_s": 86_400, "token_reuse_s": 0})
    tok = token(kis_sim)
    revoked = send(
        kis_sim,
        "POST",
        "/oauth2/revokeP",
        headers={"content-type": "application/json"},
        body={"appkey": kis_sim.appkey, "appsecret": kis_sim.appsecret, "token": tok},
    )
    assert revoked.status == 200
    assert quote(kis_sim, tok).json["msg_cd"] == "EGW00121"


def test_the_rate_limit_per_app_key(kis_sim):
    tok = token(kis_sim)
    kis_sim.control("/_sim/limits", {"rps": 3})
    replies = [quote(kis_sim, tok) for _ in range(10)]
    time.sleep(0.3)
    replies += [quote(kis_sim, tok) for _ in range(5)]  # the first burst still fills the window
    time.sleep(1.1)
    replies.append(quote(kis_sim, tok))
    refused = [r for r in replies if r.status != 200]
    assert refused and replies[-1].status == 200
    assert all(
        r.status == 500
        and r.json
        == {"rt_cd": "1", "msg_cd": "EGW00201", "msg1": "초당 거래건수를 초과하였습니다."}
        for r in refused
    )
    # Replay the server's own log against a sliding one-second window of 3 (skipping decisions
    # that sit within 10 ms of the window's edge, where arrival and decision times may differ).
    log = [(e["t"], e["status"]) for e in kis_sim.book()["requests"] if e["path"] == PRICE]
    served: list[float] = []
    checked = 0
    for t, status in log:
        ages = [t - s for s in served if t - s < 1.01]
        if not any(0.99 <= age < 1.01 for age in ages):
            assert (status == 200) == (len(ages) < 3), f"{status} at {t} with {len(ages)} served"
            checked += 1
        if status == 200:
            served.append(t)
    assert checked >= 12


# --- paging (paper: 15 orders, 20 holdings a page) ---------------------------------------------
def test_paging_both_inquiries_on_paper(kis_sim_paper):
    sim = kis_sim_paper
    sim.control("/_sim/limits", {"rps": 1000})
    tok = token(sim)
    assert (
        order(sim, tok, side="BUY", qty=1, price=50_000, ord_dvsn="11").json["msg_cd"] == "APBK9908"
    )  # paper takes ORD_DVSN 00–04 only
    placed = {
        order(sim, tok, side="BUY", qty=1, price=50_000).json["output"]["ODNO"] for _ in range(17)
    }
    assert len(placed) == 17

    headers = kis_headers(sim, tok, "VTTC0081R")
    first = send(sim, "GET", DAILY_CCLD, headers=headers, params=daily_params(sim))
    assert first.header("tr_cont") == "F" and len(first.json["output1"]) == 15
    fk, nk = first.json["ctx_area_fk100"], first.json["ctx_area_nk100"]
    restart = send(sim, "GET", DAILY_CCLD, headers=headers, params=daily_params(sim, fk=fk, nk=nk))
    assert restart.header("tr_cont") == "F"  # cursors without tr_cont N: a first page again
    second = send(
        sim,
        "GET",
        DAILY_CCLD,
        headers=headers | {"tr_cont": "N"},
        params=daily_params(sim, fk=fk, nk=nk),
    )
    assert second.header("tr_cont") == "E" and len(second.json["output1"]) == 2
    seen = [r["odno"] for r in first.json["output1"] + second.json["output1"]]
    assert sorted(seen) == sorted(placed)

    give(sim, [(f"{100_000 + i:06d}", 1, 1_000) for i in range(25)])
    headers = kis_headers(sim, tok, "VTTC8434R")
    first = send(sim, "GET", BALANCE, headers=headers, params=balance_params(sim))
    second = send(
        sim,
        "GET",
        BALANCE,
        headers=headers | {"tr_cont": "N"},
        params=balance_params(
            sim, fk=first.json["ctx_area_fk100"], nk=first.json["ctx_area_nk100"]
        ),
    )
    assert (first.header("tr_cont"), len(first.json["output1"])) == ("F", 20)
    assert (second.header("tr_cont"), len(second.json["output1"])) == ("E", 5)
    assert len({r["pdno"] for r in first.json["output1"] + second.json["output1"]}) == 25


def test_paper_takes_only_paper_tr_ids(kis_sim_paper):
    tok = token(kis_sim_paper)
    reply = send(
        kis_sim_paper,
        "POST",
        ORDER_CASH,
        body=ORDER_BODY,
        headers=kis_headers(kis_sim_paper, tok, "TTTC0012U"),
    )
    assert (reply.status, reply.json["msg_cd"]) == (400, "OPSQ0002")


# --- faults ------------------------------------------------------------------------------------
def test_5xx_faults(kis_sim):
    tok = token(kis_sim)
    kis_sim.control("/_sim/faults", {"error_5xx_next": 2})
    failed = [quote(kis_sim, tok) for _ in range(2)]
    assert [r.status for r in failed] == [500, 500]
    assert all(not r.body.startswith(b"{") for r in failed)  # no KIS answer in it
    assert quote(kis_sim, tok).status == 200
    kis_sim.control("/_sim/faults", {"error_5xx_rate": 1.0, "error_status": 503})
    assert quote(kis_sim, tok).status == 503
    kis_sim.control("/_sim/faults", method="DELETE")
    assert quote(kis_sim, tok).status == 200
    faults = [e["fault"] for e in kis_sim.book()["requests"] if e["path"] == PRICE]
    assert faults == ["error_5xx", "error_5xx", None, "error_5xx", None]


def test_a_dropped_connection_and_one_dropped_after_the_order_went_in(kis_sim):
    tok = token(kis_sim)
    kis_sim.control("/_sim/faults", {"drop_next": 1})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        order(kis_sim, tok, side="BUY", qty=1)
    assert kis_sim.book()["orders"] == []
    kis_sim.control("/_sim/faults", {"drop_next": 1, "after": True})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        order(kis_sim, tok, side="BUY", qty=2)
    assert [o["qty"] for o in kis_sim.book()["orders"]] == [2]  # in, but never acknowledged
    assert order(kis_sim, tok, side="BUY", qty=1).json["rt_cd"] == "0"


def test_a_held_request_times_out_while_others_are_served(kis_sim):
    tok = token(kis_sim)
    kis_sim.control("/_sim/faults", {"timeout_next": 1, "timeout_s": 1.5})
    with pytest.raises(socket.timeout):
        send(
            kis_sim,
            "GET",
            PRICE,
            headers=kis_headers(kis_sim, tok, "FHKST01010100"),
            params={"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"},
            timeout=0.3,
        )
    assert quote(kis_sim, tok).status == 200
    held = next(e for e in kis_sim.book()["requests"] if e["fault"] == "timeout")
    assert held["status"] is None  # still held
    time.sleep(1.5)
    held = next(e for e in kis_sim.book()["requests"] if e["fault"] == "timeout")
    assert held["status"] == 200  # answered late, to nobody


def test_answer_shape_faults_on_uapi_paths(kis_sim):
    kis_sim.control(
        "/_sim/faults",
        {"ledger_limit_next": 1, "non_json_next": 1, "omit_next": 1, "omit_field": "ODNO"},
    )
    tok = token(kis_sim)  # a token request is never counted
    limited = order(kis_sim, tok, side="BUY", qty=1)
    assert (limited.status, limited.json["rt_cd"], limited.json["msg_cd"]) == (500, "1", "EGW00215")
    assert limited.json["msg1"] and limited.header("tr_id") == "TTTC0012U"
    assert kis_sim.book()["orders"] == []  # a refusal: it never took effect
    garbled = order(kis_sim, tok, side="BUY", qty=2)
    assert garbled.status == 200
    with pytest.raises(ValueError):
        json.loads(garbled.body)
    assert kis_sim.book()["orders"] == []  # without `after`, it never took effect
    omitted = order(kis_sim, tok, side="BUY", qty=3)
    assert (omitted.status, omitted.json["rt_cd"]) == (200, "0")
    assert "ODNO" not in omitted.json["output"] and omitted.json["output"]["KRX_FWDG_ORD_ORGNO"]
    assert [o["qty"] for o in kis_sim.book()["orders"]] == [3]  # taken, its number withheld

    kis_sim.control("/_sim/faults", {"non_json_next": 1, "after": True})
    cut = order(kis_sim, tok, side="BUY", qty=4)
    assert cut.status == 200 and cut.body.startswith(b"{") and cut.header("tr_id")
    with pytest.raises(ValueError):
        json.loads(cut.body)
    assert [o["qty"] for o in kis_sim.book()["orders"]] == [3, 4]
    kis_sim.control("/_sim/faults", {"after": False, "omit_next": 1, "omit_field": "stck_prpr"})
    assert "stck_prpr" not in quote(kis_sim, tok).json["output"]
    assert quote(kis_sim, tok).json["output"]["stck_prpr"] == "71000"
    faults = [e["fault"] for e in kis_sim.book()["requests"]]
    assert faults == [None, "ledger_limit", "non_json", "omit", "non_json", "omit", None]


def test_a_lost_request_times_out_and_never_takes_effect(kis_sim):
    tok = token(kis_sim)
    kis_sim.control("/_sim/faults", {"lost_next": 1, "timeout_s": 1.0, "after": True})
    with pytest.raises(socket.timeout):
        order(kis_sim, tok, side="BUY", qty=1, timeout=0.3)
    lost = next(e for e in kis_sim.book()["requests"] if e["fault"] == "lost")
    deadline = time.monotonic() + 10
    while lost["status"] is None:  # held, then closed unanswered
        assert time.monotonic() < deadline, lost
        time.sleep(0.1)
        lost = next(e for e in kis_sim.book()["requests"] if e["fault"] == "lost")
    assert lost["status"] == 0 and kis_sim.book()["orders"] == []
    assert order(kis_sim, tok, side="BUY", qty=2).json["rt_cd"] == "0"


def test_latency(kis_sim):
    tok = token(kis_sim)
    kis_sim.control("/_sim/faults", {"latency_ms": 300})
    started = time.monotonic()
    assert quote(kis_sim, tok).status == 200
    assert time.monotonic() - started >= 0.29


def test_an_outage_refuses_rest_and_websocket_until_it_ends(kis_sim):
    tok = token(kis_sim)
    kis_sim.control("/_sim/faults", {"outage_s": 1.0})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        quote(kis_sim, tok)

    async def connect():
        async with websockets.connect(kis_sim.ws_url + "/tryitout", open_timeout=5):
            pass

    with pytest.raises(websockets.InvalidStatus):
        asyncio.run(connect())
    time.sleep(1.1)
    assert quote(kis_sim, tok).status == 200
    asyncio.run(connect())


# --- orders ------------------------------------------------------------------------------------
def test_a_market_buy_fills_on_the_next_trade(kis_sim):
    tok = token(kis_sim)
    odno = order(kis_sim, tok, side="BUY", qty=10).json["output"]["ODNO"]
    kis_sim.control("/_sim/prices", {"pdno": "005930", "path": [71_200]})
    assert kis_sim.control("/_sim/step", {"pdno": "005930"})["fills"] == 1
    row = next(r for r in daily(kis_sim, tok) if r["odno"] == odno)
    assert (row["tot_ccld_qty"], row["rmn_qty"], row["avg_prvs"], row["tot_ccld_amt"]) == (
        "10",
        "0",
        "71200",
        "712000",
    )
    held = holdings(kis_sim, tok)["005930"]
    assert (held["hldg_qty"], held["ord_psbl_qty"], held["pchs_avg_pric"]) == (
        "10",
        "10",
        "71200.0000",
    )
    (acct,) = kis_sim.book()["accounts"]
    assert acct["cash"] == 100_000_000 - 712_000


def test_a_limit_sell_fills_when_the_price_reaches_it(kis_sim):
    give(kis_sim, [("005930", 100, 65_000)])
    tok = token(kis_sim)
    odno = order(kis_sim, tok, side="SELL", qty=30, price=72_000).json["output"]["ODNO"]
    kis_sim.control("/_sim/prices", {"pdno": "005930", "path": [71_500, 72_100]})
    assert kis_sim.control("/_sim/step", {"pdno": "005930"})["fills"] == 0
    assert kis_sim.control("/_sim/step", {"pdno": "005930"})["fills"] == 1
    row = next(r for r in daily(kis_sim, tok) if r["odno"] == odno)
    assert (row["tot_ccld_qty"], row["avg_prvs"]) == ("30", "72100")  # at the limit or better
    assert holdings(kis_sim, tok)["005930"]["hldg_qty"] == "70"


def test_large_orders_fill_in_parts(kis_sim):
    kis_sim.control("/_sim/limits", {"max_fill_per_step": 4})
    tok = token(kis_sim)
    odno = order(kis_sim, tok, side="BUY", qty=10, price=80_000).json["output"]["ODNO"]
    remaining = []
    for _ in range(3):
        kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 1})
        remaining.append(next(r["rmn_qty"] for r in daily(kis_sim, tok) if r["odno"] == odno))
    assert remaining == ["6", "2", "0"]


def test_cancel_and_modify_release_and_move_the_orderable_qty(kis_sim):
    give(kis_sim, [("005930", 10, 70_000)])
    tok = token(kis_sim)
    first = order(kis_sim, tok, side="SELL", qty=10, price=80_000).json["output"]["ODNO"]
    assert holdings(kis_sim, tok)["005930"]["ord_psbl_qty"] == "0"
    assert revise(kis_sim, tok, odno=first, cancel=True, qty=4).json["rt_cd"] == "0"
    assert holdings(kis_sim, tok)["005930"]["ord_psbl_qty"] == "4"
    moved = revise(kis_sim, tok, odno=first, cancel=False, price=70_000).json["output"]["odno"]
    assert moved != first
    row = next(r for r in daily(kis_sim, tok) if r["odno"] == moved)
    assert (row["orgn_odno"], row["ord_qty"], row["ord_unpr"]) == (first, "6", "70000")
    assert revise(kis_sim, tok, odno=first, cancel=True).json["msg_cd"] == "APBK9907"
    kis_sim.control("/_sim/step", {"steps": 0})  # match at 71,000 ≥ 70,000
    assert holdings(kis_sim, tok)["005930"]["hldg_qty"] == "4"
    assert revise(kis_sim, tok, odno=moved, cancel=True, orgno="00000").json["msg_cd"] == "APBK9910"


@pytest.mark.parametrize(
    ("side", "qty", "price", "msg_cd"),
    [
        ("SELL", 1, 71_000, "APBK9901"),  # holds none: no short selling
        ("BUY", 1, 71_050, "APBK9903"),  # off the 100-won grid
        ("BUY", 1, 92_400, "APBK9904"),  # above +30 %
        ("BUY", 1, 49_600, "APBK9904"),  # below −30 %
        ("BUY", 0, 71_000, "APBK9905"),
        ("BUY", 2_000, 71_000, "APBK9902"),  # 142,000,000 > 100,000,000
    ],
)
def test_refused_orders(kis_sim, side, qty, price, msg_cd):
    reply = order(kis_sim, token(kis_sim), side=side, qty=qty, price=price)
    assert (reply.status, reply.json["rt_cd"], reply.json["msg_cd"]) == (200, "1", msg_cd)
    assert reply.json["msg1"] and "output" not in reply.json
    assert kis_sim.book()["orders"] == []


def test_a_sell_beyond_the_orderable_qty_counts_open_sells(kis_sim):
    give(kis_sim, [("005930", 10, 70_000)])
    tok = token(kis_sim)
    assert order(kis_sim, tok, side="SELL", qty=7, price=90_000).json["rt_cd"] == "0"
    assert order(kis_sim, tok, side="SELL", qty=4, price=90_000).json["msg_cd"] == "APBK9901"
    assert order(kis_sim, tok, side="SELL", qty=3, price=90_000).json["rt_cd"] == "0"


def test_market_closed_and_unknown_symbol(kis_sim):
    tok = token(kis_sim)
    assert order(kis_sim, tok, side="BUY", qty=1, pdno="999999").json["msg_cd"] == "APBK0656"
    kis_sim.control("/_sim/session", {"open": False})
    assert order(kis_sim, tok, side="BUY", qty=1).json["msg_cd"] == "APBK0918"


def test_a_call_auction_takes_orders_and_matches_them_at_one_price_when_it_ends(kis_sim):
    give(kis_sim, [("005930", 10, 70_000)])
    tok = token(kis_sim)
    kis_sim.control("/_sim/session", {"open": False, "auction": True})
    assert kis_sim.book()["auction"] is True
    placed = {
        name: order(kis_sim, tok, side=side, qty=qty, price=price).json
        for name, side, qty, price in [
            ("buy", "BUY", 3, 71_500),
            ("low", "BUY", 2, 70_000),
            ("sell", "SELL", 4, 70_500),
        ]
    }
    assert {name: answer["rt_cd"] for name, answer in placed.items()} == dict.fromkeys(placed, "0")
    odno = {name: answer["output"]["ODNO"] for name, answer in placed.items()}
    # In the auction prices move (the expected price) and nothing trades.
    kis_sim.control("/_sim/prices", {"pdno": "005930", "price": 71_000})
    assert kis_sim.control("/_sim/step", {"steps": 3})["ticks"] == 0
    assert kis_sim.book()["fills"] == []
    # Its end: one trade at the price then, and every order that crosses it fills there.
    assert kis_sim.control("/_sim/session", {"open": True}) | {"ok": True} == {
        "ok": True,
        "open": True,
        "auction": False,
        "ticks": 1,
        "notices": 2,
        "fills": 2,
    }
    fills = {(f["odno"], f["qty"], f["price"]) for f in kis_sim.book()["fills"]}
    assert fills == {(odno["buy"], 3, 71_000), (odno["sell"], 4, 71_000)}
    assert order(kis_sim, tok, side="BUY", qty=1, price=71_000).json["rt_cd"] == "0"
    # The closing auction ends with the market closed: orders are refused after it.
    kis_sim.control("/_sim/session", {"open": False, "auction": True})
    kis_sim.control("/_sim/prices", {"pdno": "005930", "price": 70_000})
    assert kis_sim.control("/_sim/session", {"open": False})["fills"] == 2
    closing = [(f["odno"], f["price"]) for f in kis_sim.book()["fills"]][2:]
    assert len(closing) == 2 and odno["low"] in dict(closing)
    assert {price for _, price in closing} == {70_000}
    assert order(kis_sim, tok, side="BUY", qty=1).json["msg_cd"] == "APBK0918"


def test_the_simulator_keeps_the_exchanges_day_on_its_clock(kis_sim):
    """With /_sim/day the session follows KRX's day on the simulator's clock: closed before
    08:30, the opening auction matched at one price at 09:00, the close ending every working
    order, holidays refused as not a market day."""
    import datetime as dt

    from tests.support import wait_until

    give(kis_sim, [("005930", 10, 70_000)])
    tok = token(kis_sim)
    tuesday = dt.date(2026, 11, 24)

    def at(hh, mm, ss=0):
        kis_sim.control(
            "/_sim/clock",
            {
                "start": dt.datetime(
                    2026, 11, 24, hh, mm, ss, tzinfo=dt.timezone(dt.timedelta(hours=9))
                ).isoformat()
            },
        )

    def phase_is(phase):
        wait_until(lambda: kis_sim.book()["day_phase"] == phase, f"the {phase} phase", 10)

    at(8, 0)
    assert kis_sim.control("/_sim/day", {})["phase"] == "closed"
    assert order(kis_sim, tok, side="BUY", qty=1, price=70_000).json["msg_cd"] == "APBK0918"
    at(8, 59, 58)  # the opening auction: taken, nothing trades until 09:00
    phase_is("auction")
    buy = order(kis_sim, tok, side="BUY", qty=3, price=71_000).json["output"]["ODNO"]
    sell = order(kis_sim, tok, side="SELL", qty=3, price=70_500).json["output"]["ODNO"]
    low = order(kis_sim, tok, side="BUY", qty=2, price=60_000).json["output"]["ODNO"]
    assert kis_sim.book()["fills"] == []
    phase_is("continuous")  # 09:00 on the simulator's clock, two seconds later
    assert {f["odno"] for f in kis_sim.book()["fills"]} == {buy, sell}
    at(15, 30, 1)  # past the close: the working order ends with the day
    phase_is("closed")
    [left] = [o for o in kis_sim.book()["orders"] if o["odno"] == low]
    assert (left["filled_qty"], left["remaining"]) == (0, 0)
    assert order(kis_sim, tok, side="BUY", qty=1, price=70_000).json["msg_cd"] == "APBK0918"
    kis_sim.control("/_sim/day", {"closed": [tuesday.isoformat()]})
    at(10, 0)
    phase_is("holiday")
    assert order(kis_sim, tok, side="BUY", qty=1, price=70_000).json["msg_cd"] == "APBK0919"


def test_a_session_cannot_be_open_and_in_an_auction(kis_sim):
    reply = send(kis_sim, "POST", "/_sim/session", body={"open": True, "auction": True})
    assert reply.status == 400 and kis_sim.book()["session_open"] is True


# --- WebSocket ---------------------------------------------------------------------------------
def approval_key(sim) -> str:
    return send(
        sim,
        "POST",
        "/oauth2/Approval",
        headers={"content-type": "application/json"},
        body={"grant_type": "client_credentials", "appkey": sim.appkey, "secretkey": sim.appsecret},
    ).json["approval_key"]


def subscribe(approval: str, tr_id: str, tr_key: str, tr_type: str = "1") -> str:
    return json.dumps(
        {
            "header": {
                "approval_key": approval,
                "custtype": "P",
                "tr_type": tr_type,
                "content-type": "utf-8",
            },
            "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
        }
    )


async def receive(ws, predicate, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if predicate(message):
            return message


def is_json(message: str) -> bool:
    return message.startswith("{")


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_trade_frames_on_every_price_change(kis_sim):
    key = approval_key(kis_sim)

    async def body():
        async with websockets.connect(kis_sim.ws_url + "/tryitout", ping_interval=None) as ws:
            await ws.send(subscribe(key, "H0STCNT0", "005930"))
            ack = json.loads(await receive(ws, is_json))
            assert ack["header"] == {"tr_id": "H0STCNT0", "tr_key": "005930", "encrypt": "N"}
            assert (ack["body"]["rt_cd"], ack["body"]["msg_cd"], ack["body"]["msg1"]) == (
                "0",
                "OPSP0000",
                "SUBSCRIBE SUCCESS",
            )
            assert len(ack["body"]["output"]["key"]) == 32
            assert len(ack["body"]["output"]["iv"]) == 16
            await asyncio.to_thread(
                kis_sim.control, "/_sim/prices", {"pdno": "005930", "price": 71_500}
            )
            one = await receive(ws, lambda m: m.startswith("0|"))
            await asyncio.to_thread(kis_sim.control, "/_sim/step", {"pdno": "005930", "steps": 3})
            three = await receive(ws, lambda m: m.startswith("0|"))
            return one, three

    one, three = run(body())
    flag, tr_id, count, payload = one.split("|", 3)
    values = payload.split("^")
    assert (flag, tr_id, count, len(values)) == ("0", "H0STCNT0", "001", len(TRADE_FIELDS))
    assert (values[0], values[2], values[3], values[35], values[43]) == (
        "005930",
        "71500",
        "2",
        "N",
        "0",
    )
    assert re.fullmatch(r"\d{6}", values[1]) and re.fullmatch(r"\d{8}", values[33])
    assert int(values[12]) > 0 and int(values[13]) == int(values[12])
    flag, tr_id, count, payload = three.split("|", 3)
    assert count == "003" and len(payload.split("^")) == 3 * len(TRADE_FIELDS)


def test_subscription_answers_and_the_cap(kis_sim):
    key = approval_key(kis_sim)

    async def body():
        async with websockets.connect(kis_sim.ws_url + "/tryitout/extra", ping_interval=None) as ws:
            codes = []
            for i in range(42):
                await ws.send(subscribe(key, "H0STCNT0", f"{i + 1:06d}"))
                codes.append(json.loads(await receive(ws, is_json))["body"]["msg_cd"])
            await ws.send(subscribe(key, "H0STCNT0", "000001"))
            again = json.loads(await receive(ws, is_json))["body"]
            await ws.send(subscribe(key, "H0STCNT0", "000001", tr_type="2"))
            gone = json.loads(await receive(ws, is_json))["body"]
            await ws.send(subscribe("not-a-key", "H0STCNT0", "000001"))
            stranger = json.loads(await receive(ws, is_json))["body"]
            return codes, again, gone, stranger

    codes, again, gone, stranger = run(body())
    assert codes == ["OPSP0000"] * 41 + ["OPSP0008"]
    assert (again["msg_cd"], gone["msg_cd"], gone["rt_cd"]) == ("OPSP0002", "OPSP0001", "0")
    assert stranger["rt_cd"] == "1" and "output" not in stranger


def aes_decrypt(payload: str, *, key: str, iv: str) -> str:
    decryptor = Cipher(algorithms.AES(key.encode()), modes.CBC(iv.encode())).decryptor()
    padded = decryptor.update(base64.b64decode(payload)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode()


@pytest.mark.parametrize("flavour", ["real", "paper"])
def test_fill_notices_decrypt_to_the_26_fields(request, flavour):
    sim = request.getfixturevalue("kis_sim" if flavour == "real" else "kis_sim_paper")
    notice_tr = "H0STCNI0" if flavour == "real" else "H0STCNI9"
    key = approval_key(sim)
    tok = token(sim)

    async def body():
        async with websockets.connect(sim.ws_url + "/tryitout", ping_interval=None) as ws:
            await ws.send(subscribe(key, notice_tr, sim.hts_id))
            ack = json.loads(await receive(ws, is_json))
            assert ack["header"]["encrypt"] == "Y" and ack["body"]["msg_cd"] == "OPSP0000"
            reply = await asyncio.to_thread(order, sim, tok, side="BUY", qty=7)
            await asyncio.to_thread(
                sim.control, "/_sim/prices", {"pdno": "005930", "path": [70_900]}
            )
            await asyncio.to_thread(sim.control, "/_sim/step", {"pdno": "005930"})
            refused = await asyncio.to_thread(order, sim, tok, side="SELL", qty=1_000)
            frames = [await receive(ws, lambda m: m.startswith("1|")) for _ in range(3)]
            return ack["body"]["output"], reply.json["output"]["ODNO"], refused, frames

    secret, odno, refused, frames = run(body())
    assert refused.json["rt_cd"] == "1"
    records = []
    for frame in frames:
        flag, tr_id, count, payload = frame.split("|", 3)
        assert (flag, tr_id, count) == ("1", notice_tr, "001")
        values = aes_decrypt(payload, key=secret["key"], iv=secret["iv"]).split("^")
        assert len(values) == len(NOTICE_FIELDS)
        records.append(dict(zip(NOTICE_FIELDS, values)))
    accept, fill, reject = records
    assert (
        accept["ODER_NO"],
        accept["CNTG_YN"],
        accept["RFUS_YN"],
        accept["CNTG_QTY"],
        accept["SELN_BYOV_CLS"],
        accept["STCK_SHRN_ISCD"],
        accept["CUST_ID"],
    ) == (odno, "1", "0", "7", "02", "005930", sim.hts_id)
    assert (
        fill["ODER_NO"],
        fill["CNTG_YN"],
        fill["CNTG_QTY"],
        fill["CNTG_UNPR"],
        fill["ODER_QTY"],
    ) == (odno, "2", "7", "70900", "7")
    assert re.fullmatch(r"\d{6}", fill["STCK_CNTG_HOUR"])
    assert (reject["RFUS_YN"], reject["CNTG_YN"], reject["SELN_BYOV_CLS"], reject["ODER_QTY"]) == (
        "1",
        "1",
        "01",
        "1000",
    )


def test_pingpong_is_sent_and_its_echo_counted(kis_sim):
    kis_sim.control("/_sim/limits", {"ping_s": 0.2})

    async def body():
        async with websockets.connect(kis_sim.ws_url + "/tryitout", ping_interval=None) as ws:
            ping = await receive(ws, lambda m: "PINGPONG" in m)
            await ws.send(ping)
            await asyncio.sleep(0.1)
            return json.loads(ping)

    ping = run(body())
    assert ping["header"]["tr_id"] == "PINGPONG"
    assert re.fullmatch(r"\d{14}", ping["header"]["datetime"])
    stats = kis_sim.book()["ws"]
    assert stats["pings_sent"] >= 1 and stats["pings_echoed"] == 1


def _frame(header: object = None, body: object = None, **fields) -> str:
    message = json.loads(subscribe("APPROVAL", "H0STCNT0", "005930"))
    message["header"].update(fields)
    if header is not None:
        message["header"] = header
    if body is not None:
        message["body"] = body
    return json.dumps(message)


BAD_FRAMES = {
    "not JSON": "subscribe me",
    "JSON not an object": json.dumps(["header"]),
    "header not an object": _frame(header="H0STCNT0"),
    "no body": json.dumps({"header": json.loads(_frame())["header"]}),
    "input not an object": _frame(body={"input": "H0STCNT0"}),
    "tr_key a number": _frame(body={"input": {"tr_id": "H0STCNT0", "tr_key": 5930}}),
    "tr_type 3": _frame(tr_type="3"),
    "no custtype": _frame(custtype=None),
    "approval_key a list": _frame(approval_key=["APPROVAL"]),
    "approval_key an object": _frame(approval_key={"key": "APPROVAL"}),
    "unknown tr_id": _frame(body={"input": {"tr_id": "H0STXXX0", "tr_key": "005930"}}),
}


def test_malformed_subscribe_frames_get_a_kis_error_and_the_connection_keeps_serving(kis_sim):
    key = approval_key(kis_sim)

    async def body():
        async with websockets.connect(kis_sim.ws_url + "/tryitout", ping_interval=None) as ws:
            answers = {}
            for name, frame in BAD_FRAMES.items():
                await ws.send(frame.replace("APPROVAL", key))
                answers[name] = json.loads(await receive(ws, is_json))
            await ws.send(b"\x00\x01")
            answers["binary"] = json.loads(await receive(ws, is_json))
            await ws.send(subscribe(key, "H0STCNT0", "005930"))
            good = json.loads(await receive(ws, is_json))
            await asyncio.to_thread(
                kis_sim.control, "/_sim/prices", {"pdno": "005930", "price": 71_100}
            )
            trade = await receive(ws, lambda m: m.startswith("0|"))
            book = await asyncio.to_thread(kis_sim.book)
            return answers, good, trade, book["ws"]["connections_total"]

    answers, good, trade, connections_total = run(body())
    for name, answer in answers.items():
        assert answer["body"]["rt_cd"] == "1", (name, answer)
        assert answer["body"]["msg_cd"].startswith("OPSP") and "output" not in answer["body"], (
            name,
            answer,
        )
    assert (good["body"]["rt_cd"], good["body"]["msg_cd"]) == ("0", "OPSP0000")
    assert trade.split("|")[1] == "H0STCNT0"
    assert connections_total == 1  # the same connection throughout


def test_ws_drop_closes_every_connection(kis_sim):
    async def body():
        async with websockets.connect(kis_sim.ws_url + "/tryitout", ping_interval=None) as ws:
            await asyncio.to_thread(kis_sim.control, "/_sim/faults", {"ws_drop": True})
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)

    run(body())
    assert kis_sim.book()["ws"]["connections"] == 0


def test_requests_keep_flowing_from_threads(kis_sim):
    """The request log is what rate tests measure from the server's side: it must see them all."""
    tok = token(kis_sim)
    kis_sim.control("/_sim/limits", {"rps": 0})
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.extend(quote(kis_sim, tok).status for _ in range(5))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 20
    assert sum(1 for e in kis_sim.book()["requests"] if e["path"] == PRICE) == 20


# --- the command ------------------------------------------------------------------------------
def test_the_command_refuses_a_remote_host():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kis_simulator",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--ws-port",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--allow-remote" in result.stderr
    assert result.stdout == ""


def test_the_command_line_its_ready_line_ticking_and_a_clean_stop():
    key, secret = "cmd-" + os.urandom(8).hex(), os.urandom(24).hex()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kis_simulator",
            "--port",
            "0",
            "--ws-port",
            "0",
            "--flavour",
            "paper",
            "--seed",
            "5",
            "--tick-ms",
            "20",
            "--rps",
            "50",
            "--app",
            f"{key}:{secret}",
            "--account",
            "60000001-01:5000000:cmd-hts",
            "--symbol",
            "000660:120000:SK하이닉스",
            "--ping-s",
            "5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"KIS simulator ready: (http://127\.0\.0\.1:\d+) "
            r"(ws://127\.0\.0\.1:\d+)\n",
            line,
        )
        assert match, line
        sim = types.SimpleNamespace(
            base_url=match[1], appkey=key, appsecret=secret, flavour="paper"
        )
        tok = token(sim)
        reply = quote(sim, tok, pdno="000660")
        assert reply.json["output"]["stck_sdpr"] == "120000"
        time.sleep(0.5)
        book = json.loads(send(sim, "GET", "/_sim/book").body)
        assert book["flavour"] == "paper" and book["limits"]["rps"] == 50
        assert book["prices"]["000660"]["volume"] > 0  # --tick-ms moved it
        assert [(a["cano"], a["cash"], a["hts_id"]) for a in book["accounts"]] == [
            ("60000001", 5_000_000, "cmd-hts")
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout.read() == ""  # one line, no more
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
