"""KIS Open API wire facts (../shared/design/KIS.md), shared by the client and the simulator.

Only facts of the protocol live here: paths, TR IDs, field orders and message codes. Behaviour
lives in the client (client.py) and the simulator (kis_simulator/).
"""

import re
from enum import Enum


class Flavour(str, Enum):
    """Real accounts and paper (VTS) accounts use different TR IDs, hosts and limits."""

    REAL = "real"
    PAPER = "paper"


# --- endpoints ------------------------------------------------------------------------------
REAL_BASE_URL = "https://openapi.koreainvestment.com:9443"
PAPER_BASE_URL = "https://openapivts.koreainvestment.com:29443"
REAL_WS_URL = "ws://ops.koreainvestment.com:21000"
PAPER_WS_URL = "ws://ops.koreainvestment.com:31000"
WS_PATH = "/tryitout"

PATH_TOKEN = "/oauth2/tokenP"
PATH_REVOKE = "/oauth2/revokeP"
PATH_APPROVAL = "/oauth2/Approval"
PATH_HASHKEY = "/uapi/hashkey"
PATH_ORDER_CASH = "/uapi/domestic-stock/v1/trading/order-cash"
PATH_ORDER_RVSECNCL = "/uapi/domestic-stock/v1/trading/order-rvsecncl"
PATH_DAILY_CCLD = "/uapi/domestic-stock/v1/trading/inquire-daily-ccld"
PATH_BALANCE = "/uapi/domestic-stock/v1/trading/inquire-balance"
PATH_PRICE = "/uapi/domestic-stock/v1/quotations/inquire-price"
PATH_ASKING_PRICE = "/uapi/domestic-stock/v1/quotations/inquire-asking-price-exp-ccn"
PATH_HOLIDAY = "/uapi/domestic-stock/v1/quotations/chk-holiday"

# --- TR IDs (real; paper replaces a leading T, J or C with V) ---------------------------------
TR_BUY = "TTTC0012U"
TR_SELL = "TTTC0011U"
TR_RVSECNCL = "TTTC0013U"
TR_DAILY_CCLD = "TTTC0081R"
TR_BALANCE = "TTTC8434R"
TR_PRICE = "FHKST01010100"  # the same on paper
TR_ASKING_PRICE = "FHKST01010200"  # the same on paper
TR_HOLIDAY = "CTCA0903R"  # real only

# Trade prints: KRX's (H0STCNT0), Nextrade's (H0NXCNT0) and both venues' combined (H0UNCNT0), with
# the same 46 fields (KIS's samples ccnl_krx, ccnl_nxt, ccnl_total).
WS_TR_TRADE = "H0STCNT0"
WS_TR_TRADE_NXT = "H0NXCNT0"
WS_TR_TRADE_TOTAL = "H0UNCNT0"
WS_TR_TRADES = frozenset({WS_TR_TRADE, WS_TR_TRADE_NXT, WS_TR_TRADE_TOTAL})
WS_TR_NOTICE_REAL = "H0STCNI0"
WS_TR_NOTICE_PAPER = "H0STCNI9"


def tr_id(real_tr_id: str, flavour: Flavour) -> str:
    """The TR ID to send for `flavour`: paper turns a leading T, J or C into V."""
    if flavour is Flavour.PAPER and real_tr_id[:1] in {"T", "J", "C"}:
        return "V" + real_tr_id[1:]
    return real_tr_id


def trade_tr_id(flavour: Flavour) -> str:
    """The trade feed a position's prices come from: both venues' on a real account, where a
    holding trades on KRX and Nextrade for twelve hours a day; KRX's on paper, which trades on
    KRX only (whether paper's stream serves H0UNCNT0 is UNCONFIRMED)."""
    return WS_TR_TRADE if flavour is Flavour.PAPER else WS_TR_TRADE_TOTAL


def notice_tr_id(flavour: Flavour) -> str:
    return WS_TR_NOTICE_PAPER if flavour is Flavour.PAPER else WS_TR_NOTICE_REAL


# --- request values ---------------------------------------------------------------------------
ORD_DVSN_LIMIT = "00"
ORD_DVSN_MARKET = "01"
RVSE_CNCL_MODIFY = "01"
RVSE_CNCL_CANCEL = "02"
SLL_BUY_ALL, SLL_BUY_SELL, SLL_BUY_BUY = "00", "01", "02"
CCLD_ALL, CCLD_FILLED, CCLD_UNFILLED = "00", "01", "02"
# EXCG_ID_DVSN_CD: the exchange an order goes to (KRX, Nextrade, or KIS's smart order routing
# between them); the daily orders inquiry also takes ALL. Paper accounts trade on KRX only.
EXCG_KRX, EXCG_NXT, EXCG_SOR, EXCG_ALL = "KRX", "NXT", "SOR", "ALL"
EXCHANGES = (EXCG_KRX, EXCG_NXT, EXCG_SOR)
TR_CONT_FIRST, TR_CONT_NEXT = "", "N"
TR_CONT_MORE = frozenset({"F", "M"})  # a response with these has another page
TR_CONT_LAST = frozenset({"D", "E"})

PAGE_SIZE = {
    (PATH_DAILY_CCLD, Flavour.REAL): 100,
    (PATH_DAILY_CCLD, Flavour.PAPER): 15,
    (PATH_BALANCE, Flavour.REAL): 50,
    (PATH_BALANCE, Flavour.PAPER): 20,
}

# --- message codes ----------------------------------------------------------------------------
RT_CD_OK = "0"
MSG_ORDER_SENT = "APBK0013"
# Outside the hours of the order's session ("장운영시간이 아닙니다.(주문불가)"), and a date that is
# not a market day ("장운영일자가 주문일과 상이합니다"): docs/market-day.md.
MSG_MARKET_CLOSED = "APBK0918"
MSG_NOT_MARKET_DAY = "APBK0919"
MARKET_CLOSED = frozenset({MSG_MARKET_CLOSED, MSG_NOT_MARKET_DAY})
# What KIS's refusals for market hours say, whatever their code (the paper system's own texts,
# "모의투자 장종료 입니다." and "모의투자 장시작전 입니다.", come with codes not documented).
MARKET_HOURS_TEXT = re.compile(r"장운영시간|장운영일자|장종료|장시작전|주문불가시간")
MSG_PRODUCT_NOT_FOUND = "APBK0656"
EGW_TOKEN_RATE = "EGW00133"  # token issuance: once a minute (HTTP 403)
EGW_RATE_LIMIT = "EGW00201"  # per-second request limit (HTTP 500, rt_cd "1")
EGW_LEDGER_RATE_LIMIT = "EGW00215"
EGW_TOKEN_EXPIRED = "EGW00123"
EGW_TOKEN_INVALID = "EGW00121"
# An order answered with one of these codes (HTTP below 500) was refused and did not go out:
# the only answers an order may be rejected on. Any other code, HTTP >= 500, a timeout or a
# dropped connection leaves the outcome unknown, settled against the daily orders inquiry
# (docs/exactly-once.md). docs/market-day.md sources the first three; the APBK99xx block stands
# for KIS's other refusals (short sell, cash, tick, price limits, qty, nothing to revise, order
# type, branch), whose codes are UNCONFIRMED, as the simulator sends them.
ORDER_REFUSALS = frozenset(
    {
        MSG_MARKET_CLOSED,
        MSG_NOT_MARKET_DAY,
        MSG_PRODUCT_NOT_FOUND,
        "APBK9901",
        "APBK9902",
        "APBK9903",
        "APBK9904",
        "APBK9905",
        "APBK9906",
        "APBK9907",
        "APBK9908",
        "APBK9909",
        "APBK9910",
    }
)
# Refusals by KIS's gateway before an order reaches the order system (rate limits, tokens):
# the order did not go out and may be sent again.
GATEWAY_NOT_PROCESSED = frozenset(
    {
        EGW_RATE_LIMIT,
        EGW_LEDGER_RATE_LIMIT,
        EGW_TOKEN_RATE,
        EGW_TOKEN_EXPIRED,
        EGW_TOKEN_INVALID,
    }
)
WS_SUBSCRIBED = "OPSP0000"
WS_UNSUBSCRIBED = "OPSP0001"
WS_ALREADY_SUBSCRIBED = "OPSP0002"
WS_MAX_SUBSCRIBE = "OPSP0008"
# The approval key a subscription carried is unknown to KIS (expired, revoked). UNCONFIRMED.
WS_INVALID_APPROVAL = "OPSP0011"
WS_MAX_SUBSCRIPTIONS = 41

# --- WebSocket data frames --------------------------------------------------------------------
# "<0|1 encrypted>|<tr_id>|<count>|<records joined by ^, back to back when count > 1>"
TRADE_FIELDS = (
    "MKSC_SHRN_ISCD", "STCK_CNTG_HOUR", "STCK_PRPR", "PRDY_VRSS_SIGN", "PRDY_VRSS", "PRDY_CTRT",
    "WGHN_AVRG_STCK_PRC", "STCK_OPRC", "STCK_HGPR", "STCK_LWPR", "ASKP1", "BIDP1", "CNTG_VOL",
    "ACML_VOL", "ACML_TR_PBMN", "SELN_CNTG_CSNU", "SHNU_CNTG_CSNU", "NTBY_CNTG_CSNU", "CTTR",
    "SELN_CNTG_SMTN", "SHNU_CNTG_SMTN", "CCLD_DVSN", "SHNU_RATE", "PRDY_VOL_VRSS_ACML_VOL_RATE",
    "OPRC_HOUR", "OPRC_VRSS_PRPR_SIGN", "OPRC_VRSS_PRPR", "HGPR_HOUR", "HGPR_VRSS_PRPR_SIGN",
    "HGPR_VRSS_PRPR", "LWPR_HOUR", "LWPR_VRSS_PRPR_SIGN", "LWPR_VRSS_PRPR", "BSOP_DATE",
    "NEW_MKOP_CLS_CODE", "TRHT_YN", "ASKP_RSQN1", "BIDP_RSQN1", "TOTAL_ASKP_RSQN",
    "TOTAL_BIDP_RSQN", "VOL_TNRT", "PRDY_SMNS_HOUR_ACML_VOL", "PRDY_SMNS_HOUR_ACML_VOL_RATE",
    "HOUR_CLS_CODE", "MRKT_TRTM_CLS_CODE", "VI_STND_PRC",
)  # fmt: skip
assert len(TRADE_FIELDS) == 46

# H0STCNI0 / H0STCNI9, AES-256-CBC + base64 + PKCS7 with the key/iv of the subscribe ack.
# CNTG_YN "2" is a fill; "1" an accept/modify/cancel/reject notice (RFUS_YN "1" = rejected).
# SELN_BYOV_CLS "01" sell, "02" buy.
NOTICE_FIELDS = (
    "CUST_ID", "ACNT_NO", "ODER_NO", "OODER_NO", "SELN_BYOV_CLS", "RCTF_CLS", "ODER_KIND",
    "ODER_COND", "STCK_SHRN_ISCD", "CNTG_QTY", "CNTG_UNPR", "STCK_CNTG_HOUR", "RFUS_YN",
    "CNTG_YN", "ACPT_YN", "BRNC_NO", "ODER_QTY", "ACNT_NAME", "ORD_COND_PRC", "ORD_EXG_GB",
    "POPUP_YN", "FILLER", "CRDT_CLS", "CRDT_LOAN_DATE", "CNTG_ISNM40", "ODER_PRC",
)  # fmt: skip
assert len(NOTICE_FIELDS) == 26
SELN_BYOV_SELL, SELN_BYOV_BUY = "01", "02"


def split_frame(raw: str) -> tuple[bool, str, int, str] | None:
    """(encrypted, tr_id, count, payload) of a data frame, or None for a JSON control message."""
    if not raw or raw[0] not in "01":
        return None
    parts = raw.split("|", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[0] == "1", parts[1], int(parts[2]), parts[3]


def split_records(payload: str, fields: tuple[str, ...], count: int) -> list[dict[str, str]]:
    """The `count` records of a frame's payload, each as {field name: value}."""
    values = payload.split("^")
    width = len(fields)
    if count < 1 or len(values) < width * count:
        raise ValueError(
            f"frame holds {len(values)} values, fewer than {count} record(s) of {width}"
        )
    return [dict(zip(fields, values[i * width : (i + 1) * width])) for i in range(count)]


def join_records(records: list[dict[str, str]], fields: tuple[str, ...]) -> str:
    return "^".join(str(record.get(name, "")) for record in records for name in fields)
