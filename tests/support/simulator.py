"""A bare HTTP client for the KIS simulator, spoken to as KIS's own samples speak (KIS.md): the
requests both test_simulator.py and test_simulator_drill_faults.py (tests/kis_simulator/) make."""

import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass

ORDER_CASH = "/uapi/domestic-stock/v1/trading/order-cash"
DAILY_CCLD = "/uapi/domestic-stock/v1/trading/inquire-daily-ccld"
BALANCE = "/uapi/domestic-stock/v1/trading/inquire-balance"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]  # as sent, names in their case
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


def send(
    sim,
    method: str,
    path: str,
    *,
    headers: dict | None = None,
    body=None,
    params: dict | None = None,
    timeout: float = 10.0,
) -> Reply:
    url = urllib.parse.urlsplit(sim.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        target = path + ("?" + urllib.parse.urlencode(params) if params is not None else "")
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def token(sim) -> str:
    reply = send(
        sim,
        "POST",
        "/oauth2/tokenP",
        headers={"content-type": "application/json; charset=utf-8"},
        body={"grant_type": "client_credentials", "appkey": sim.appkey, "appsecret": sim.appsecret},
    )
    assert reply.status == 200, reply.body
    return reply.json["access_token"]


def kis_headers(sim, tok: str, tr_id: str, **extra) -> dict:
    return {
        "content-type": "application/json; charset=utf-8",
        "authorization": f"Bearer {tok}",
        "appkey": sim.appkey,
        "appsecret": sim.appsecret,
        "tr_id": tr_id,
        "custtype": "P",
        "tr_cont": "",
    } | extra


def tr(sim, real: str) -> str:
    return "V" + real[1:] if sim.flavour == "paper" else real


def order(
    sim,
    tok,
    *,
    side: str,
    pdno: str = "005930",
    qty: int,
    price: int = 0,
    ord_dvsn: str | None = None,
    timeout: float = 10.0,
) -> Reply:
    body = {
        "CANO": sim.cano,
        "ACNT_PRDT_CD": sim.acnt_prdt_cd,
        "PDNO": pdno,
        "ORD_DVSN": ord_dvsn or ("01" if price == 0 else "00"),
        "ORD_QTY": str(qty),
        "ORD_UNPR": str(price),
        "EXCG_ID_DVSN_CD": "KRX",
        "SLL_TYPE": "",
        "CNDT_PRIC": "",
    }
    tr_id = tr(sim, "TTTC0012U" if side == "BUY" else "TTTC0011U")
    return send(
        sim, "POST", ORDER_CASH, headers=kis_headers(sim, tok, tr_id), body=body, timeout=timeout
    )


def daily_params(sim, *, fk: str = "", nk: str = "", inqr_dvsn: str = "00") -> dict:
    # The Seoul day, from the day before: a test may run across midnight in Seoul.
    now = time.time() + 9 * 3600
    today, yesterday = (time.strftime("%Y%m%d", time.gmtime(t)) for t in (now, now - 86_400))
    return {
        "CANO": sim.cano,
        "ACNT_PRDT_CD": sim.acnt_prdt_cd,
        "INQR_STRT_DT": yesterday,
        "INQR_END_DT": today,
        "SLL_BUY_DVSN_CD": "00",
        "PDNO": "",
        "CCLD_DVSN": "00",
        "INQR_DVSN": inqr_dvsn,
        "INQR_DVSN_3": "00",
        "ORD_GNO_BRNO": "",
        "ODNO": "",
        "INQR_DVSN_1": "",
        "CTX_AREA_FK100": fk,
        "CTX_AREA_NK100": nk,
        "EXCG_ID_DVSN_CD": "KRX",
    }


def balance_params(sim, *, fk: str = "", nk: str = "") -> dict:
    return {
        "CANO": sim.cano,
        "ACNT_PRDT_CD": sim.acnt_prdt_cd,
        "AFHR_FLPR_YN": "N",
        "OFL_YN": "",
        "INQR_DVSN": "02",
        "UNPR_DVSN": "01",
        "FUND_STTL_ICLD_YN": "N",
        "FNCG_AMT_AUTO_RDPT_YN": "N",
        "PRCS_DVSN": "00",
        "CTX_AREA_FK100": fk,
        "CTX_AREA_NK100": nk,
    }


def give(sim, holdings_: list[tuple[str, int, int]], cash: int = 100_000_000) -> None:
    sim.control(
        "/_sim/accounts",
        {
            "cano": sim.cano,
            "acnt_prdt_cd": sim.acnt_prdt_cd,
            "cash": cash,
            "hts_id": sim.hts_id,
            "holdings": [{"pdno": p, "qty": q, "avg_price": a} for p, q, a in holdings_],
        },
    )
