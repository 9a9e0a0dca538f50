"""KIS's wire protocol over aiohttp: REST on one port, WebSocket on another, as KIS has two hosts.

The REST side answers KIS's own paths, headers, TR IDs and JSON shapes (KIS.md): tokens with their
issuance limit, a per-app-key rate limit, paging, orders and inquiries against engine.Engine.
The WebSocket side acks subscriptions, pushes H0STCNT0 trade frames and AES-encrypted
H0STCNI0/H0STCNI9 notices, and sends PINGPONG. A control API under /_sim/ on the REST port sets
the scene for tests, the demo and benchmarks, and injects faults.

Every error leaves as KIS-style JSON, never a stack trace; secrets and tokens never reach a log
or an answer (an app key is shown as the first 12 hex digits of its SHA-256).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import random
import re
import secrets
import string
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta, timezone
from datetime import time as dt_time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from aiohttp import WSMsgType, web

from core import clock as aegis_clock
from kis import protocol
from kis.crypto import aes_encrypt
from kis.protocol import Flavour
from market import krx

from . import day as day_model
from . import engine as eng
from .day import KrxDay

logger = logging.getLogger("aegis.kis.simulator")

SEOUL = timezone(timedelta(hours=9))

# --- how KIS answers where KIS.md does not say (UNCONFIRMED: one place, named) ----------------
ERROR_RT_CD = "1"
TOKEN_ERROR_STATUS = 500  # UNCONFIRMED: EGW00121 invalid / EGW00123 expired token
GATEWAY_ERROR_STATUS = 500  # UNCONFIRMED: app key or secret refused
INPUT_ERROR_STATUS = 400  # UNCONFIRMED: malformed request (headers, JSON, fields, account)
REFUSAL_STATUS = 200  # UNCONFIRMED: business refusals (rt_cd "1"); KIS's samples read them off 200
RATE_LIMIT_STATUS = 500  # KIS.md: EGW00201 is seen as HTTP 500; EGW00215 UNCONFIRMED, the same
LEDGER_LIMIT_TEXT = "원장 초당 거래건수를 초과하였습니다."  # UNCONFIRMED: EGW00215's msg1
TOKEN_RATE_STATUS = 403  # KIS.md: EGW00133 is HTTP 403
OAUTH_ERROR_STATUS = 403  # UNCONFIRMED: other oauth2 refusals (unknown app, wrong secret)
EGW_INVALID_APPKEY = "EGW00103"  # UNCONFIRMED
EGW_INVALID_APPSECRET = "EGW00105"  # UNCONFIRMED
EGW_BAD_OAUTH_REQUEST = "EGW00205"  # UNCONFIRMED: oauth2 body malformed or incomplete
MSG_NO_SUCH_SERVICE = "OPSQ0002"  # UNCONFIRMED: tr_id unknown for this path or flavour
MSG_UNKNOWN_PATH = "OPSQ0001"  # UNCONFIRMED
MSG_BAD_JSON = "OPSQ1002"  # UNCONFIRMED
MSG_INVALID_ACCOUNT = "OPSQ2000"  # UNCONFIRMED
MSG_INPUT_FIELD = "OPSQ2001"  # UNCONFIRMED: a header or field missing, not a string, malformed
MSG_EXCHANGE_UNSUPPORTED = "APBK9909"  # UNCONFIRMED (the simulator trades KRX only)
MSG_QUOTE_OK = ("MCA00000", "정상처리 되었습니다.")  # UNCONFIRMED
MSG_INQUIRY_OK = ("KIOK0510", "조회가 완료되었습니다")  # UNCONFIRMED
MSG_REVISION_SENT = (protocol.MSG_ORDER_SENT, "주문 전송 완료 되었습니다.")  # UNCONFIRMED for 0013U
# The case of order-rvsecncl's output keys is UNCONFIRMED (KIS.md); KIS's own sample reads them
# lower-case, while order-cash's are upper-case.
RVSECNCL_OUTPUT_UPPER = False
# Older order TR IDs still work at KIS "until blocked without notice" (KIS.md): accepted, logged.
LEGACY_ORDER_TR_IDS = {"TTTC0802U": eng.Side.BUY, "TTTC0801U": eng.Side.SELL}
ORD_DVSN_ALLOWED = {
    Flavour.REAL: frozenset({"00", "01", "02", "03", "04", "11", "12", "13", "14", "15", "16"}),
    Flavour.PAPER: frozenset({"00", "01", "02", "03", "04"}),
}
MARKET_DIV_CODES = frozenset({"J", "NX", "UN"})

# WebSocket answers other than the four protocol.py names (UNCONFIRMED codes and texts).
WS_INVALID_APPROVAL = (protocol.WS_INVALID_APPROVAL, "invalid approval : NOT FOUND")
WS_NOT_SUBSCRIBED = ("OPSP0003", "UNSUBSCRIBE ERROR(not found!)")
WS_BAD_REQUEST = ("OPSP0009", "SUBSCRIBE ERROR : invalid request")
WS_OUTBOX_LIMIT = 100_000  # frames queued for one slow reader before it is disconnected

REQUEST_LOG_SIZE = 100_000
_ALNUM = string.ascii_letters + string.digits
_INT = re.compile(r"-?\d{1,15}")


def app_fingerprint(appkey: str) -> str:
    """How an app key appears in logs and the book (the client's fingerprint, too)."""
    return hashlib.sha256(appkey.encode()).hexdigest()[:12] if appkey else ""


# --- errors -----------------------------------------------------------------------------------
class KisHttpError(Exception):
    """An answer KIS gives instead of the requested one."""

    def __init__(self, status: int, body: dict) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status} {body}")


def kis_error(status: int, msg_cd: str, msg1: str) -> KisHttpError:
    return KisHttpError(status, {"rt_cd": ERROR_RT_CD, "msg_cd": msg_cd, "msg1": msg1})


def oauth_error(status: int, code: str, description: str) -> KisHttpError:
    return KisHttpError(status, {"error_description": description, "error_code": code})


def field_error(name: str, why: str = "") -> KisHttpError:
    return kis_error(
        INPUT_ERROR_STATUS,
        MSG_INPUT_FIELD,
        f"ERROR : INPUT_FIELD_NAME {name}" + (f" ({why})" if why else ""),
    )


class ControlError(ValueError):
    """A /_sim/ request the simulator cannot carry out."""


# --- settings that tests change at run time ---------------------------------------------------
DEFAULT_RPS = {Flavour.REAL: 20, Flavour.PAPER: 2}  # KIS.md: about 20/s real, 2/s paper


@dataclass
class Limits:
    rps: int  # requests per second per app key, sliding one-second window; 0: no limit
    token_interval_s: float = 60.0  # one token a minute per app key
    token_ttl_s: float = 86_400.0
    token_reuse_s: float = 6 * 3600.0  # asking again within this returns the same token
    max_fill_per_step: int = 0  # per order per matching step; 0: no cap
    ping_s: float = 10.0
    reject_notices: bool = True
    # KIS's key case is not pinned down for every path (KIS.md): answer /uapi with upper-case
    # keys so a client can be shown to read them either way.
    upper_keys: bool = False
    vi: bool = False  # KRX's volatility interruptions (engine.Engine.vi)


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_5xx_next: int = 0
    error_5xx_rate: float = 0.0
    error_status: int = 500
    timeout_next: int = 0
    timeout_s: float = 30.0
    drop_next: int = 0
    # Held for timeout_s, then closed without an answer, and never taken effect: a request lost
    # on its way to KIS, which its client only learns of from its read timeout.
    lost_next: int = 0
    outage_until: float = 0.0  # monotonic
    after: bool = False  # let the request take effect, then fail, hold, drop or garble its answer
    # Answer shapes a client must survive, on /uapi/ paths only (a token request is never
    # counted): KIS's refusal EGW00215 (the per-second ledger limit; never takes effect)...
    ledger_limit_next: int = 0
    # ...HTTP 200 with a body that is not JSON (with `after`: the real answer, cut short)...
    non_json_next: int = 0
    # ...and the real answer without the field `omit_field`, at any depth, in any case.
    omit_next: int = 0
    omit_field: str = "odno"
    # ...and the real answer with the field `garble_field` (any depth, any case) set to
    # `garble_value`: a number KIS would never send ("Infinity", "1E+5000000", "12.9", "-5").
    garble_next: int = 0
    garble_field: str = "ord_qty"
    garble_value: str = "Infinity"
    # The next fill notices (CNTG_YN 2) are pushed twice, as a repeated frame.
    notice_repeat_next: int = 0
    # A 5xx (error_5xx) carries KIS's body {rt_cd "1", msg_cd, msg1} when error_msg_cd is set,
    # as KIS's gateway answers some failures; otherwise a plain-text body, no KIS fields.
    error_msg_cd: str = ""
    error_msg1: str = ""
    # When set, the counted faults and error_5xx_rate meet only requests whose path contains
    # it (e.g. "order-cash", "inquire-daily-ccld", "inquire-balance"); others pass untouched.
    path: str = ""

    def draw(
        self, *, now: float, rng: random.Random, uapi: bool = True, path: str = ""
    ) -> str | None:
        """The fault this request meets, consuming one of the counted ones."""
        if now < self.outage_until:
            return "outage"
        if self.path and self.path not in path:
            return None
        answer_shapes = ("ledger_limit", "non_json", "omit", "garble") if uapi else ()
        for name in ("drop", "timeout", "lost", "error_5xx") + answer_shapes:
            if getattr(self, f"{name}_next") > 0:
                setattr(self, f"{name}_next", getattr(self, f"{name}_next") - 1)
                return name
        if self.error_5xx_rate and rng.random() < self.error_5xx_rate:
            return "error_5xx"
        return None


# --- tokens, apps, rate windows, the request log -----------------------------------------------
@dataclass
class Token:
    value: str
    appkey: str
    issued: float  # monotonic
    expires: float  # monotonic
    expires_at: datetime  # wall clock, Asia/Seoul


class Gateway:
    """What KIS's API gateway keeps: apps, tokens, approval keys, rate windows, a request log."""

    def __init__(
        self,
        *,
        apps: Iterable[tuple[str, str]],
        mono: Callable[[], float],
        clock: Callable[[], datetime],
    ) -> None:
        self.mono = mono
        self.clock = clock
        self.apps: dict[str, str] = dict(apps)
        self.tokens: dict[str, Token] = {}
        self.current: dict[str, Token] = {}
        self.last_issued: dict[str, float] = {}
        self.token_issuance: Counter[str] = Counter()
        self.approvals: dict[str, str] = {}
        self.approval_issuance: Counter[str] = Counter()
        self.windows: dict[str, deque[float]] = {}
        self.log: deque[dict] = deque(maxlen=REQUEST_LOG_SIZE)

    def check_app(self, appkey: str, appsecret: str, *, oauth: bool) -> None:
        refuse = oauth_error if oauth else kis_error
        status = OAUTH_ERROR_STATUS if oauth else GATEWAY_ERROR_STATUS
        known = self.apps.get(appkey)
        if known is None:
            raise refuse(status, EGW_INVALID_APPKEY, "유효하지 않은 AppKey입니다.")
        if not secrets.compare_digest(known.encode(), appsecret.encode()):
            raise refuse(status, EGW_INVALID_APPSECRET, "유효하지 않은 AppSecret입니다.")

    def issue_token(self, appkey: str, limits: Limits) -> Token:
        now = self.mono()
        last = self.last_issued.get(appkey)
        if last is not None and now - last < limits.token_interval_s:
            raise oauth_error(
                TOKEN_RATE_STATUS,
                protocol.EGW_TOKEN_RATE,
                "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
            )
        self.last_issued[appkey] = now
        self.token_issuance[app_fingerprint(appkey)] += 1
        current = self.current.get(appkey)
        if (
            current is not None
            and current.value in self.tokens
            and now - current.issued < limits.token_reuse_s
            and now < current.expires
        ):
            return current
        token = Token(
            value=_jwt_like(appkey),
            appkey=appkey,
            issued=now,
            expires=now + limits.token_ttl_s,
            expires_at=self.clock() + timedelta(seconds=limits.token_ttl_s),
        )
        self.tokens[token.value] = token
        self.current[appkey] = token
        return token

    def revoke(self, appkey: str, value: str) -> None:
        token = self.tokens.get(value)
        if token is None or token.appkey != appkey:
            raise oauth_error(
                OAUTH_ERROR_STATUS, protocol.EGW_TOKEN_INVALID, "유효하지 않은 token 입니다."
            )
        del self.tokens[value]
        if self.current.get(appkey) is token:
            del self.current[appkey]

    def issue_approval(self, appkey: str) -> str:
        key = "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
        self.approvals[key] = appkey
        self.approval_issuance[app_fingerprint(appkey)] += 1
        return key

    def authorize(self, appkey: str, bearer: str) -> None:
        token = self.tokens.get(bearer)
        if token is None or token.appkey != appkey:
            raise kis_error(
                TOKEN_ERROR_STATUS, protocol.EGW_TOKEN_INVALID, "유효하지 않은 token 입니다."
            )
        if self.mono() >= token.expires:
            raise kis_error(
                TOKEN_ERROR_STATUS, protocol.EGW_TOKEN_EXPIRED, "기간이 만료된 token 입니다."
            )

    def admit(self, appkey: str, rps: int) -> None:
        """Take a slot of the app key's sliding one-second window, or refuse with EGW00201."""
        if rps <= 0:
            return
        now = self.mono()
        window = self.windows.setdefault(appkey, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= rps:
            raise kis_error(
                RATE_LIMIT_STATUS, protocol.EGW_RATE_LIMIT, "초당 거래건수를 초과하였습니다."
            )
        window.append(now)


def _jwt_like(appkey: str) -> str:
    """An opaque token shaped like KIS's (a JWT of a few hundred characters)."""

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = b64({"typ": "JWT", "alg": "HS512"})
    payload = b64(
        {
            "sub": "token",
            "aud": secrets.token_hex(16),
            "prdt_cd": "",
            "iss": "unogw",
            "iat": int(time.time()),
            "jti": app_fingerprint(appkey),
        }
    )
    return f"{header}.{payload}.{secrets.token_urlsafe(64)}"


# --- wire formatting ----------------------------------------------------------------------------
def _fixed(value: int | Fraction, places: int = 2) -> str:
    """An exact value as KIS writes rates and averages: a fixed number of decimals."""
    value = Fraction(value)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return str(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _pct(num: int | Fraction, den: int | Fraction) -> str:
    return _fixed(Fraction(num) * 100 / Fraction(den)) if den else "0.00"


def _round(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _clean(text: str) -> str:
    """Free text inside a ^-joined record must not carry the separators."""
    return text.replace("^", " ").replace("|", " ")


def trade_record(t: eng.Tick) -> dict[str, str]:
    diff = t.price - t.prev_close
    ask1 = t.price + t.tick if t.price < t.upper_limit else 0
    avg = Fraction(t.cumulative_amount, t.cumulative_volume) if t.cumulative_volume else t.price

    def vs(ref: int) -> tuple[str, str]:
        return ("2" if t.price > ref else "5" if t.price < ref else "3"), str(t.price - ref)

    open_sign, open_diff = vs(t.open)
    high_sign, high_diff = vs(t.high)
    low_sign, low_diff = vs(t.low)
    record = dict.fromkeys(protocol.TRADE_FIELDS, "0")
    record.update(
        {
            "MKSC_SHRN_ISCD": t.pdno,
            "STCK_CNTG_HOUR": t.time,
            "STCK_PRPR": str(t.price),
            "PRDY_VRSS_SIGN": t.sign,
            "PRDY_VRSS": str(diff),
            "PRDY_CTRT": _pct(diff, t.prev_close),
            "WGHN_AVRG_STCK_PRC": _fixed(avg),
            "STCK_OPRC": str(t.open),
            "STCK_HGPR": str(t.high),
            "STCK_LWPR": str(t.low),
            "ASKP1": str(ask1),
            "BIDP1": str(t.price),
            "CNTG_VOL": str(t.volume),
            "ACML_VOL": str(t.cumulative_volume),
            "ACML_TR_PBMN": str(t.cumulative_amount),
            "CTTR": "100.00",
            "CCLD_DVSN": "1" if diff >= 0 else "5",
            "SHNU_RATE": "50.00",
            "PRDY_VOL_VRSS_ACML_VOL_RATE": "0.00",
            "OPRC_HOUR": t.open_time,
            "OPRC_VRSS_PRPR_SIGN": open_sign,
            "OPRC_VRSS_PRPR": open_diff,
            "HGPR_HOUR": t.high_time,
            "HGPR_VRSS_PRPR_SIGN": high_sign,
            "HGPR_VRSS_PRPR": high_diff,
            "LWPR_HOUR": t.low_time,
            "LWPR_VRSS_PRPR_SIGN": low_sign,
            "LWPR_VRSS_PRPR": low_diff,
            "BSOP_DATE": t.date,
            "NEW_MKOP_CLS_CODE": "20",
            "TRHT_YN": "Y" if t.halted else "N",
            "VOL_TNRT": "0.00",
            "PRDY_SMNS_HOUR_ACML_VOL_RATE": "0.00",
            # "C": after 09:00, an expected price, a VI triggered (KIS's field description).
            "HOUR_CLS_CODE": "C" if t.expected else "0",
            "MRKT_TRTM_CLS_CODE": "",
            "VI_STND_PRC": str(t.vi_reference),
        }
    )
    return record


def notice_record(n: eng.Notice) -> dict[str, str]:
    condition = {"11": "1", "13": "1", "15": "1", "12": "2", "14": "2", "16": "2"}
    return {
        "CUST_ID": _clean(n.hts_id),
        "ACNT_NO": n.cano + n.acnt_prdt_cd,
        "ODER_NO": n.odno,
        "OODER_NO": n.orgn_odno,
        "SELN_BYOV_CLS": n.side.value,
        "RCTF_CLS": n.rctf_cls,
        "ODER_KIND": n.ord_dvsn,
        "ODER_COND": condition.get(n.ord_dvsn, "0"),
        "STCK_SHRN_ISCD": n.pdno,
        "CNTG_QTY": str(n.qty),
        "CNTG_UNPR": str(n.price),
        "STCK_CNTG_HOUR": n.time,
        "RFUS_YN": "1" if n.rejected else "0",
        "CNTG_YN": "2" if n.filled else "1",
        "ACPT_YN": n.acpt_yn,
        "BRNC_NO": n.orgno,
        "ODER_QTY": str(n.order_qty),
        "ACNT_NAME": _clean(n.account_name),
        "ORD_COND_PRC": "0",
        "ORD_EXG_GB": "1",
        "POPUP_YN": "Y",
        "FILLER": "",
        "CRDT_CLS": "10",
        "CRDT_LOAN_DATE": "",
        "CNTG_ISNM40": _clean(n.name),
        "ODER_PRC": str(n.order_price),
    }


ORD_DVSN_NAMES = {
    "00": "지정가",
    "01": "시장가",
    "02": "조건부지정가",
    "03": "최유리지정가",
    "04": "최우선지정가",
    "11": "IOC지정가",
    "12": "FOK지정가",
    "13": "IOC시장가",
    "14": "FOK시장가",
    "15": "IOC최유리",
    "16": "FOK최유리",
}


def order_row(o: eng.Order, name: str) -> dict[str, str]:
    side = "매도" if o.side is eng.Side.SELL else "매수"
    suffix = {"new": "", "modify": "정정", "cancel": "취소"}[o.kind]
    avg = _round(Fraction(o.filled_amount, o.filled_qty)) if o.filled_qty else 0
    return {
        "ord_dt": o.ord_dt,
        "ord_gno_brno": o.orgno,
        "odno": o.odno,
        "orgn_odno": o.orgn_odno,
        "ord_dvsn_name": ORD_DVSN_NAMES.get(o.ord_dvsn, ""),
        "sll_buy_dvsn_cd": o.side.value,
        "sll_buy_dvsn_cd_name": f"현금{side}{suffix}",
        "pdno": o.pdno,
        "prdt_name": name,
        "ord_qty": str(o.qty),
        "ord_unpr": str(o.price),
        "ord_tmd": o.ord_tmd,
        "tot_ccld_qty": str(o.filled_qty),
        "avg_prvs": str(avg),
        "cncl_yn": "Y" if o.kind == "cancel" else "N",
        "tot_ccld_amt": str(o.filled_amount),
        "loan_dt": "",
        "ordr_empno": "",
        "ord_dvsn_cd": o.ord_dvsn,
        "cnc_cfrm_qty": str(o.qty if o.kind == "cancel" else o.cancelled_qty),
        "rmn_qty": str(o.remaining),
        "rjct_qty": str(o.rejected_qty),
        "ccld_cndt_name": {"IOC": "IOC", "FOK": "FOK"}.get(o.tif, "없음"),
        "inqr_ip_addr": "",
        "cpbc_ordp_ord_rcit_dvsn_cd": "",
        "cpbc_ordp_infm_mthd_dvsn_cd": "",
        "infm_tmd": "",
        "ctac_tlno": "",
        "prdt_type_cd": "300",
        "excg_dvsn_cd": "02",
        "cpbc_ordp_mtrl_dvsn_cd": "",
        "ord_orgno": "",
        "rsvn_ord_end_dt": "",
        "excg_id_dvsn_Cd": o.venue,  # spelled so in KIS's answer
        "stpm_cndt_pric": "0",
        "stpm_efct_occr_dtmd": "",
    }


def holding_row(
    pdno: str, h: eng.Holding, sym: eng.Symbol | None, orderable: int
) -> tuple[dict[str, str], int, int]:
    """(output1 row, purchase amount, valuation) of one holding."""
    price = sym.price if sym else _round(h.avg)
    bought = _round(h.avg * h.qty)
    value = price * h.qty
    row = {
        "pdno": pdno,
        "prdt_name": sym.name if sym else pdno,
        "trad_dvsn_name": "현금",
        "bfdy_buy_qty": "0",
        "bfdy_sll_qty": "0",
        "thdt_buyqty": str(h.bought_today),
        "thdt_sll_qty": str(h.sold_today),
        "hldg_qty": str(h.qty),
        "ord_psbl_qty": str(orderable),
        "pchs_avg_pric": str(h.avg_price),
        "pchs_amt": str(bought),
        "prpr": str(price),
        "evlu_amt": str(value),
        "evlu_pfls_amt": str(value - bought),
        "evlu_pfls_rt": _pct(value - bought, bought),
        "evlu_erng_rt": _pct(value - bought, bought),
        "loan_dt": "",
        "loan_amt": "0",
        "stln_slng_chgs": "0",
        "expd_dt": "",
        "fltt_rt": _pct(price - sym.prev_close, sym.prev_close) if sym else "0.00",
        "bfdy_cprs_icdc": str(price - sym.prev_close) if sym else "0",
        "item_mgna_rt_name": "",
        "grta_rt_name": "",
        "sbst_pric": "0",
        "stck_loan_unpr": "0",
    }
    return row, bought, value


# --- paging -------------------------------------------------------------------------------------
def page(
    rows: list[dict[str, str]], *, key: str, descending: bool, size: int, tr_cont: str, nk: str
) -> tuple[list[dict[str, str]], str, str]:
    """(this page, response tr_cont, next NK100). A page continues only when the request says
    tr_cont "N" and returns the cursor, as at KIS; the cursor is the last key served.
    """
    continuing = tr_cont == protocol.TR_CONT_NEXT and nk.strip() != ""
    if continuing:
        last = nk.strip().rsplit("^", 1)[-1]
        rows = [r for r in rows if (r[key] < last if descending else r[key] > last)]
    chunk, more = rows[:size], len(rows) > size
    if continuing:
        answer = "M" if more else "E"  # a later page: more follows, or the last
    else:
        answer = "F" if more else "D"  # the first page: more follows, or the only one
    cursor = chunk[-1][key] if chunk and more else ""
    return chunk, answer, cursor


# --- WebSocket connections ----------------------------------------------------------------------
class Connection:
    def __init__(self, ws: web.WebSocketResponse, number: int) -> None:
        self.ws = ws
        self.number = number
        # One key and iv per connection, given in every ack of it: KIS's client keeps them per
        # tr_id, so a per-connection pair is what a subscription's ack must carry.
        self.key = "".join(secrets.choice(_ALNUM) for _ in range(32))
        self.iv = "".join(secrets.choice(_ALNUM) for _ in range(16))
        self.subscriptions: dict[tuple[str, str], str] = {}  # (tr_id, tr_key) -> approval key
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, text: str) -> None:
        if self.outbox.qsize() >= WS_OUTBOX_LIMIT:
            logger.warning("kis_sim.ws connection %s reads too slowly: closing it", self.number)
            self.outbox.put_nowait(None)
            return
        self.outbox.put_nowait(text)

    def send_close(self) -> None:
        self.outbox.put_nowait(None)

    async def write_loop(self) -> None:
        try:
            while True:
                text = await self.outbox.get()
                if text is None:
                    await self.ws.close()
                    return
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass  # the reader left; its handler cleans up


@dataclass
class StreamStats:
    connections_total: int = 0
    pings_sent: int = 0
    pings_echoed: int = 0
    frames_sent: int = 0


# --- the simulator ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccountSpec:
    cano: str
    acnt_prdt_cd: str
    cash: int
    hts_id: str


@dataclass(frozen=True)
class SimulatorConfig:
    flavour: Flavour = Flavour.REAL
    seed: int = 0
    tick_ms: int = 0
    rps: int | None = None  # None: KIS's default for the flavour
    ping_s: float = 10.0
    apps: tuple[tuple[str, str], ...] = ()
    accounts: tuple[AccountSpec, ...] = ()
    symbols: tuple[tuple[str, int, str], ...] = ()  # (pdno, price, name)


class Simulator:
    """The state behind both servers: engine, gateway, limits, faults, WebSocket connections."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Callable[[], datetime] = aegis_clock.now_seoul,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` is the day's time (aegis's own clock by default, so AEGIS_CLOCK_START moves
        the simulator with every other process); /_sim/clock moves it until the next reset."""
        self.config = config
        self.flavour = config.flavour
        self._base_clock = self._clock = clock
        self.mono = mono
        self.connections: set[Connection] = set()
        self.stats = StreamStats()
        self.reset(seed=config.seed)

    # --- state --------------------------------------------------------------------------------
    def reset(self, *, seed: int) -> None:
        """Back to the command line's state: a new day, no tokens, no faults, default limits."""
        config = self.config
        self.seed = seed
        self._clock = self._base_clock
        self.limits = Limits(
            rps=DEFAULT_RPS[self.flavour] if config.rps is None else config.rps,
            ping_s=config.ping_s,
        )
        self.faults = Faults()
        self.fault_rng = random.Random(seed)
        self.gateway = Gateway(apps=config.apps, mono=self.mono, clock=self.clock)
        self.engine = eng.Engine(seed=seed)
        # The exchange's day on this clock (POST /_sim/day); None: sessions set by hand.
        self.day: KrxDay | None = None
        self.day_phase: tuple[str, str] | None = None  # (KRX's, Nextrade's)
        now = self.clock()
        for spec in config.accounts:
            self.engine.set_account(
                cano=spec.cano, acnt_prdt_cd=spec.acnt_prdt_cd, cash=spec.cash, hts_id=spec.hts_id
            )
        for pdno, price, name in config.symbols:
            self.engine.set_price(pdno, now=now, price=price, name=name)
        self.apply_limits()
        self.drop_connections()
        self.stats = StreamStats()

    def clock(self) -> datetime:
        """Now, Asia/Seoul: what trades, orders and fills are stamped with."""
        return self._clock().astimezone(SEOUL)

    def clock_set(self, shifted: aegis_clock.ShiftedClock | None) -> None:
        """Run the day from another moment (None: back to the base clock)."""
        self._clock = self._base_clock if shifted is None else shifted.now

    def follow_day(self) -> None:
        """Move the session to where the exchange's day is on this clock: the auctions'
        matches, and at the close every working order ended. Called often (serve's loop)."""
        if self.day is None:
            return
        now = self.clock()
        krx, nxt = self.day.phase(now), self.day.nxt_phase(now)
        if (krx, nxt) == self.day_phase:
            return
        before, self.day_phase = self.day_phase, (krx, nxt)
        engine = self.engine
        engine.market_day = krx != day_model.HOLIDAY
        engine.nxt_open = nxt == day_model.CONTINUOUS
        events = engine.set_session(
            open_=krx == day_model.CONTINUOUS, auction=krx == day_model.AUCTION, now=now
        )
        if before is not None:
            for venue, closed, ended_day in (
                (protocol.EXCG_KRX, krx, self.day.closed_since_open(now)),
                (protocol.EXCG_NXT, nxt, self.day.nxt_ended(now)),
            ):
                if closed == day_model.CLOSED and ended_day:
                    ended = engine.end_day(venue)
                    if ended:
                        logger.info("kis_sim %s closed at %s: %d orders ended", venue, now, ended)
        self.publish(events)

    def apply_limits(self) -> None:
        self.engine.max_fill_per_step = self.limits.max_fill_per_step
        self.engine.reject_notices = self.limits.reject_notices
        self.engine.vi = self.limits.vi

    def open_connection(self, ws: web.WebSocketResponse) -> Connection:
        self.stats.connections_total += 1
        conn = Connection(ws, self.stats.connections_total)
        self.connections.add(conn)
        return conn

    def drop_connections(self) -> None:
        for conn in list(self.connections):
            conn.send_close()
        self.connections.clear()

    # --- pushing events -----------------------------------------------------------------------
    def publish(self, events: Iterable[eng.Tick | eng.Notice | None]) -> None:
        ticks: dict[str, list[eng.Tick]] = {}
        for event in events:
            if isinstance(event, eng.Tick):
                ticks.setdefault(event.pdno, []).append(event)
            elif isinstance(event, eng.Notice):
                self._push_notice(event)
        for pdno, batch in ticks.items():
            # Both venues' combined feed carries every print; KRX's and Nextrade's their own.
            for tr, prints in (
                (protocol.WS_TR_TRADE_TOTAL, batch),
                (protocol.WS_TR_TRADE, [t for t in batch if t.venue == protocol.EXCG_KRX]),
                (protocol.WS_TR_TRADE_NXT, [t for t in batch if t.venue == protocol.EXCG_NXT]),
            ):
                readers = [c for c in self.connections if (tr, pdno) in c.subscriptions]
                if not readers or not prints:
                    continue
                payload = protocol.join_records(
                    [trade_record(t) for t in prints], protocol.TRADE_FIELDS
                )
                frame = f"0|{tr}|{len(prints):03d}|{payload}"
                for conn in readers:
                    conn.send(frame)
                    self.stats.frames_sent += 1

    def _push_notice(self, notice: eng.Notice) -> None:
        tr = protocol.notice_tr_id(self.flavour)
        readers = [c for c in self.connections if (tr, notice.hts_id) in c.subscriptions]
        if not readers:
            return
        copies = 1
        if notice.filled and self.faults.notice_repeat_next > 0:
            self.faults.notice_repeat_next -= 1
            copies = 2
        text = protocol.join_records([notice_record(notice)], protocol.NOTICE_FIELDS)
        for conn in readers:
            frame = f"1|{tr}|001|{aes_encrypt(text, key=conn.key, iv=conn.iv)}"
            for _ in range(copies):
                conn.send(frame)
                self.stats.frames_sent += 1

    # --- the control API's view ---------------------------------------------------------------
    def book(self, *, with_requests: bool = True) -> dict:
        e = self.engine
        accounts = []
        for acct in e.accounts.values():
            reserved = acct.reserved_cash
            accounts.append(
                {
                    "cano": acct.cano,
                    "acnt_prdt_cd": acct.acnt_prdt_cd,
                    "hts_id": acct.hts_id,
                    "deposit": acct.deposit,
                    "cash": acct.cash,
                    "reserved_cash": reserved,
                    "orderable_cash": acct.cash - reserved,
                    "holdings": [
                        {
                            "pdno": pdno,
                            "qty": h.qty,
                            "orderable": acct.orderable_qty(pdno),
                            "avg_price": str(h.avg_price),
                        }
                        for pdno, h in sorted(acct.holdings.items())
                        if h.qty > 0
                    ],
                }
            )
        orders = [
            {
                "odno": o.odno,
                "orgn_odno": o.orgn_odno,
                "orgno": o.orgno,
                "cano": o.account[0],
                "acnt_prdt_cd": o.account[1],
                "pdno": o.pdno,
                "side": o.side.name,
                "kind": o.kind,
                "ord_dvsn": o.ord_dvsn,
                "qty": o.qty,
                "price": o.price,
                "filled_qty": o.filled_qty,
                "filled_amount": o.filled_amount,
                "cancelled_qty": o.cancelled_qty,
                "revised_qty": o.revised_qty,
                "remaining": o.remaining,
                "ord_dt": o.ord_dt,
                "ord_tmd": o.ord_tmd,
                "venue": o.venue,
                "routed": o.routed,
            }
            for o in e.orders.values()
        ]
        fills = [
            {
                "seq": f.seq,
                "odno": f.odno,
                "cano": f.account[0],
                "acnt_prdt_cd": f.account[1],
                "pdno": f.pdno,
                "side": f.side.name,
                "qty": f.qty,
                "price": f.price,
                "time": f.time,
            }
            for f in e.fills
        ]
        prices = {}
        for pdno, sym in sorted(e.symbols.items()):
            lower, upper = sym.limits
            prices[pdno] = {
                "price": sym.price,
                "prev_close": sym.prev_close,
                "lower_limit": lower,
                "upper_limit": upper,
                "open": sym.open,
                "high": sym.high,
                "low": sym.low,
                "volume": sym.volume,
                "halted": sym.halted,
                "path_left": len(sym.path),
            }
        book = {
            "flavour": self.flavour.value,
            "seed": self.seed,
            "session_open": e.session_open,
            "auction": e.auction,
            "day_phase": self.day_phase and self.day_phase[0],
            "nxt_phase": self.day_phase and self.day_phase[1],
            "nxt_open": e.nxt_open,
            "limits": asdict(self.limits),
            "faults": self.faults_view(),
            "accounts": accounts,
            "orders": orders,
            "fills": fills,
            "prices": prices,
            "token_issuance": dict(self.gateway.token_issuance),
            "approval_issuance": dict(self.gateway.approval_issuance),
            "ws": asdict(self.stats)
            | {
                "connections": len(self.connections),
                "subscriptions": sum(len(c.subscriptions) for c in self.connections),
            },
        }
        if with_requests:
            book["requests"] = list(self.gateway.log)
        return book

    def faults_view(self) -> dict:
        view = asdict(self.faults)
        view["outage_s"] = max(0.0, view.pop("outage_until") - self.mono())
        return view


# --- REST: KIS's paths ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    appkey: str
    appsecret: str
    tr_id: str
    tr_cont: str
    hashkey: str


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _upper_keys(value: object) -> object:
    if isinstance(value, dict):
        return {str(k).upper(): _upper_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_upper_keys(v) for v in value]
    return value


def _json(body: object, *, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _uapi_headers(response: web.StreamResponse, tr_id: str) -> None:
    response.headers["tr_id"] = tr_id
    response.headers.setdefault("tr_cont", "")
    response.headers["gt_uid"] = secrets.token_hex(16)


class RestApi:
    """KIS's REST paths, and the middleware that turns every failure into a KIS-style answer."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(protocol.PATH_TOKEN, self.token),
            web.post(protocol.PATH_REVOKE, self.revoke),
            web.post(protocol.PATH_APPROVAL, self.approval),
            web.post(protocol.PATH_HASHKEY, self.hashkey),
            web.post(protocol.PATH_ORDER_CASH, self.order_cash),
            web.post(protocol.PATH_ORDER_RVSECNCL, self.order_rvsecncl),
            web.get(protocol.PATH_DAILY_CCLD, self.daily_ccld),
            web.get(protocol.PATH_BALANCE, self.balance),
            web.get(protocol.PATH_PRICE, self.price),
            web.get(protocol.PATH_HOLIDAY, self.holidays),
            web.get(protocol.PATH_ASKING_PRICE, self.asking_price),
        ]

    # --- the middleware: log, faults, KIS-style errors ----------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await _control_answer(request, handler)
        sim = self.sim
        arrived = sim.mono()
        entry = {
            "t": arrived,
            "app": app_fingerprint(request.headers.get("appkey", "")),
            "method": request.method,
            "path": request.path,
            "tr_id": request.headers.get("tr_id", ""),
            "status": None,
            "fault": None,
        }
        sim.gateway.log.append(entry)
        faults = sim.faults
        fault = faults.draw(
            now=arrived,
            rng=sim.fault_rng,
            uapi=request.path.startswith("/uapi/"),
            path=request.path,
        )
        entry["fault"] = fault
        after = faults.after and fault not in ("outage", "lost", "ledger_limit")
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if fault in ("outage", "drop") and not after:
            _drop(request, entry)
        if fault in ("timeout", "lost") and not after:
            await asyncio.sleep(faults.timeout_s)
        if fault == "lost":
            _drop(request, entry)
        response: web.StreamResponse
        if fault == "error_5xx" and not after:
            response = _failure(faults)
        elif fault == "non_json" and not after:
            response = _non_json(None)
        elif fault == "ledger_limit":
            response = await self._answer(request, _ledger_limited)
        else:
            response = await self._answer(request, handler)
            if after and fault == "drop":
                _drop(request, entry)
            if after and fault == "timeout":
                await asyncio.sleep(faults.timeout_s)
            if after and fault == "error_5xx":
                response = _failure(faults)
            if after and fault == "non_json":
                response = _non_json(response)
            if fault == "omit":
                response = _omitting(response, faults.omit_field)
            if fault == "garble":
                response = _garbling(response, faults.garble_field, faults.garble_value)
        entry["status"] = response.status
        return response

    async def _answer(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except KisHttpError as exc:
            response = _json(exc.body, status=exc.status)
        except web.HTTPException as exc:
            code = MSG_BAD_JSON if exc.status == 413 else MSG_UNKNOWN_PATH
            response = _json(
                {
                    "rt_cd": ERROR_RT_CD,
                    "msg_cd": code,
                    "msg1": f"{exc.reason}: {request.method} {request.path}",
                },
                status=exc.status,
            )
        except Exception:
            logger.exception("kis_sim internal error on %s %s", request.method, request.path)
            response = _json(
                {
                    "rt_cd": ERROR_RT_CD,
                    "msg_cd": "",
                    "msg1": "simulator internal error: see its log",
                },
                status=500,
            )
        if self.sim.limits.upper_keys and request.path.startswith("/uapi/"):
            response = _rewritten(response, _upper_keys)
        if request.path.startswith("/uapi/"):
            _uapi_headers(response, request.headers.get("tr_id", ""))
        return response

    # --- request parsing ----------------------------------------------------------------------
    def _caller(
        self, request: web.Request, *, tr_ids: Iterable[str] = (), token: bool = True
    ) -> Caller:
        h = request.headers
        if not h.get("content-type", "").lower().startswith("application/json"):
            raise field_error("content-type", "application/json; charset=utf-8 expected")
        appkey, appsecret = h.get("appkey", ""), h.get("appsecret", "")
        gateway = self.sim.gateway
        gateway.check_app(appkey, appsecret, oauth=False)
        gateway.admit(appkey, self.sim.limits.rps)
        tr_id = h.get("tr_id", "")
        if token:
            scheme, _, bearer = h.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not bearer.strip():
                raise kis_error(
                    TOKEN_ERROR_STATUS, protocol.EGW_TOKEN_INVALID, "유효하지 않은 token 입니다."
                )
            gateway.authorize(appkey, bearer.strip())
            if not tr_id:
                raise field_error("tr_id")
            if tr_id not in tr_ids:
                raise kis_error(
                    INPUT_ERROR_STATUS,
                    MSG_NO_SUCH_SERVICE,
                    f"없는 서비스 코드 입니다 ({tr_id} on {request.path}, "
                    f"{self.sim.flavour.value})",
                )
            if h.get("custtype", "") not in ("P", "B"):
                raise field_error("custtype", "P or B")
        return Caller(
            appkey=appkey,
            appsecret=appsecret,
            tr_id=tr_id,
            tr_cont=h.get("tr_cont", ""),
            hashkey=h.get("hashkey", ""),
        )

    def _tr(self, real: str) -> str:
        return protocol.tr_id(real, self.sim.flavour)

    @staticmethod
    async def _body(request: web.Request, required: Iterable[str]) -> dict[str, str]:
        data = await _read_json(request)
        if not isinstance(data, dict):
            raise kis_error(INPUT_ERROR_STATUS, MSG_BAD_JSON, "JSON 형식이 올바르지 않습니다.")
        for name, value in data.items():
            if not isinstance(value, str):
                raise field_error(name, "every value is a string")
        for name in required:
            if name not in data:
                hint = "POST body keys are upper-case" if name.lower() in data else "missing"
                raise field_error(name, hint)
        return data

    @staticmethod
    def _query(
        request: web.Request, *, filled: Iterable[str], present: Iterable[str] = ()
    ) -> dict[str, str]:
        query = request.query
        for name in filled:
            if not query.get(name, "").strip():
                raise field_error(name, "missing" if name not in query else "empty")
        for name in present:
            if name not in query:
                raise field_error(name, "missing")
        return {k: v for k, v in query.items()}

    def _account(self, data: dict[str, str]) -> eng.AccountKey:
        key = (data.get("CANO", ""), data.get("ACNT_PRDT_CD", ""))
        if key not in self.sim.engine.accounts:
            raise kis_error(
                INPUT_ERROR_STATUS, MSG_INVALID_ACCOUNT, "ERROR : INPUT INVALID_CHECK_ACNO"
            )
        return key

    @staticmethod
    def _int(data: dict[str, str], name: str) -> int:
        raw = data.get(name, "").strip()
        if not _INT.fullmatch(raw):
            raise field_error(name, "a whole number as a string")
        return int(raw)

    @staticmethod
    def _hash(data: object, appsecret: str) -> str:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256((appsecret + canonical).encode()).hexdigest()

    def _check_hashkey(self, caller: Caller, data: dict[str, str]) -> None:
        # The hashkey header is optional (KIS.md); when sent it must be the body's.
        if caller.hashkey and caller.hashkey != self._hash(data, caller.appsecret):
            raise field_error("hashkey", "does not match the body")

    # --- oauth2 -------------------------------------------------------------------------------
    @staticmethod
    async def _oauth_body(request: web.Request, required: tuple[str, ...]) -> dict[str, str]:
        data = await _read_json(request, oauth=True)
        if not isinstance(data, dict):
            raise oauth_error(INPUT_ERROR_STATUS, EGW_BAD_OAUTH_REQUEST, "invalid request body")
        for name in required:
            if not isinstance(data.get(name), str) or not data[name]:
                raise oauth_error(INPUT_ERROR_STATUS, EGW_BAD_OAUTH_REQUEST, f"{name} is required")
        if "grant_type" in required and data["grant_type"] != "client_credentials":
            raise oauth_error(
                INPUT_ERROR_STATUS, EGW_BAD_OAUTH_REQUEST, "grant_type must be client_credentials"
            )
        return data

    async def token(self, request: web.Request) -> web.Response:
        data = await self._oauth_body(request, ("grant_type", "appkey", "appsecret"))
        gateway = self.sim.gateway
        gateway.check_app(data["appkey"], data["appsecret"], oauth=True)
        token = gateway.issue_token(data["appkey"], self.sim.limits)
        return _json(
            {
                "access_token": token.value,
                "access_token_token_expired": token.expires_at.strftime("%Y-%m-%d %H:%M:%S"),
                "token_type": "Bearer",
                "expires_in": max(0, int(token.expires - self.sim.mono())),
            }
        )

    async def revoke(self, request: web.Request) -> web.Response:
        data = await self._oauth_body(request, ("appkey", "appsecret", "token"))
        self.sim.gateway.check_app(data["appkey"], data["appsecret"], oauth=True)
        self.sim.gateway.revoke(data["appkey"], data["token"])
        return _json({"code": 200, "message": "접근토큰 폐기에 성공하였습니다"})

    async def approval(self, request: web.Request) -> web.Response:
        data = await self._oauth_body(request, ("grant_type", "appkey", "secretkey"))
        self.sim.gateway.check_app(data["appkey"], data["secretkey"], oauth=True)
        return _json({"approval_key": self.sim.gateway.issue_approval(data["appkey"])})

    async def hashkey(self, request: web.Request) -> web.Response:
        caller = self._caller(request, token=False)
        data = await _read_json(request)
        if not isinstance(data, dict):
            raise kis_error(INPUT_ERROR_STATUS, MSG_BAD_JSON, "JSON 형식이 올바르지 않습니다.")
        return _json({"BODY": data, "HASH": self._hash(data, caller.appsecret)})

    # --- orders -------------------------------------------------------------------------------
    async def order_cash(self, request: web.Request) -> web.Response:
        sides = {self._tr(protocol.TR_BUY): eng.Side.BUY, self._tr(protocol.TR_SELL): eng.Side.SELL}
        legacy = {self._tr(tr): side for tr, side in LEGACY_ORDER_TR_IDS.items()}
        caller = self._caller(request, tr_ids=sides.keys() | legacy.keys())
        if caller.tr_id in legacy:
            logger.warning(
                "kis_sim legacy order TR ID %s: KIS may block it without notice", caller.tr_id
            )
        side = sides.get(caller.tr_id) or legacy[caller.tr_id]
        data = await self._body(
            request, ("CANO", "ACNT_PRDT_CD", "PDNO", "ORD_DVSN", "ORD_QTY", "ORD_UNPR")
        )
        self._check_hashkey(caller, data)
        account = self._account(data)
        qty, price = self._int(data, "ORD_QTY"), self._int(data, "ORD_UNPR")
        ord_dvsn = data["ORD_DVSN"]
        self._check_order_options(data, ord_dvsn=ord_dvsn, side=side)
        try:
            order, events = self.sim.engine.submit(
                account=account,
                pdno=data["PDNO"],
                side=side,
                ord_dvsn=ord_dvsn,
                qty=qty,
                price=price,
                now=self.sim.clock(),
                venue=data.get("EXCG_ID_DVSN_CD", "") or protocol.EXCG_KRX,
            )
        except eng.Refusal as refusal:
            self.sim.publish([refusal.notice])
            raise kis_error(REFUSAL_STATUS, refusal.msg_cd, refusal.msg1) from None
        self.sim.publish(events)
        return _json(
            {
                "rt_cd": protocol.RT_CD_OK,
                "msg_cd": protocol.MSG_ORDER_SENT,
                "msg1": "주문 전송 완료 되었습니다.",
                "output": {
                    "KRX_FWDG_ORD_ORGNO": order.orgno,
                    "ODNO": order.odno,
                    "ORD_TMD": order.ord_tmd,
                },
            }
        )

    def _check_order_options(
        self, data: dict[str, str], *, ord_dvsn: str, side: eng.Side | None
    ) -> None:
        if ord_dvsn not in ORD_DVSN_ALLOWED[self.sim.flavour]:
            raise kis_error(
                REFUSAL_STATUS,
                eng.MSG_ORD_DVSN_UNSUPPORTED,
                eng.REFUSAL_TEXT[eng.MSG_ORD_DVSN_UNSUPPORTED] + f" ({ord_dvsn})",
            )
        venue = data.get("EXCG_ID_DVSN_CD", "") or protocol.EXCG_KRX
        if venue not in protocol.EXCHANGES:
            raise field_error("EXCG_ID_DVSN_CD", "/".join(protocol.EXCHANGES))
        if venue != protocol.EXCG_KRX and self.sim.flavour is Flavour.PAPER:
            raise kis_error(
                REFUSAL_STATUS, MSG_EXCHANGE_UNSUPPORTED, "모의투자는 KRX만 가능합니다."
            )
        if venue == protocol.EXCG_NXT and ord_dvsn == protocol.ORD_DVSN_MARKET:
            raise kis_error(
                REFUSAL_STATUS,
                eng.MSG_ORD_DVSN_UNSUPPORTED,
                eng.REFUSAL_TEXT[eng.MSG_ORD_DVSN_UNSUPPORTED] + " (NXT 시장가)",
            )
        # SLL_TYPE 02 (discretionary) and 05 (borrowed-stock sale) are not plain cash sells.
        if side is eng.Side.SELL and data.get("SLL_TYPE", "") not in ("", "01"):
            raise kis_error(
                REFUSAL_STATUS,
                eng.MSG_SELL_OVER_ORDERABLE,
                "현금 일반매도(SLL_TYPE 01)만 가능합니다.",
            )

    async def order_rvsecncl(self, request: web.Request) -> web.Response:
        caller = self._caller(request, tr_ids={self._tr(protocol.TR_RVSECNCL)})
        data = await self._body(
            request,
            (
                "CANO",
                "ACNT_PRDT_CD",
                "KRX_FWDG_ORD_ORGNO",
                "ORGN_ODNO",
                "ORD_DVSN",
                "RVSE_CNCL_DVSN_CD",
                "ORD_QTY",
                "ORD_UNPR",
                "QTY_ALL_ORD_YN",
            ),
        )
        self._check_hashkey(caller, data)
        account = self._account(data)
        kind = data["RVSE_CNCL_DVSN_CD"]
        if kind not in (protocol.RVSE_CNCL_MODIFY, protocol.RVSE_CNCL_CANCEL):
            raise field_error("RVSE_CNCL_DVSN_CD", "01 modify or 02 cancel")
        if data["QTY_ALL_ORD_YN"] not in ("Y", "N"):
            raise field_error("QTY_ALL_ORD_YN", "Y or N")
        qty, price = self._int(data, "ORD_QTY"), self._int(data, "ORD_UNPR")
        cancel = kind == protocol.RVSE_CNCL_CANCEL
        if not cancel:
            self._check_order_options(data, ord_dvsn=data["ORD_DVSN"], side=None)
        odno = data["ORGN_ODNO"].strip()
        odno = odno.zfill(10) if odno.isdigit() else odno
        try:
            order, events = self.sim.engine.revise(
                account=account,
                orgno=data["KRX_FWDG_ORD_ORGNO"],
                orgn_odno=odno,
                cancel=cancel,
                ord_dvsn=data["ORD_DVSN"],
                qty=None if data["QTY_ALL_ORD_YN"] == "Y" else qty,
                price=price,
                now=self.sim.clock(),
            )
        except eng.Refusal as refusal:
            raise kis_error(REFUSAL_STATUS, refusal.msg_cd, refusal.msg1) from None
        self.sim.publish(events)
        output = {"KRX_FWDG_ORD_ORGNO": order.orgno, "ODNO": order.odno, "ORD_TMD": order.ord_tmd}
        if not RVSECNCL_OUTPUT_UPPER:
            output = {k.lower(): v for k, v in output.items()}
        msg_cd, msg1 = MSG_REVISION_SENT
        return _json({"rt_cd": protocol.RT_CD_OK, "msg_cd": msg_cd, "msg1": msg1, "output": output})

    # --- inquiries ----------------------------------------------------------------------------
    async def daily_ccld(self, request: web.Request) -> web.Response:
        caller = self._caller(request, tr_ids={self._tr(protocol.TR_DAILY_CCLD)})
        q = self._query(
            request,
            filled=(
                "CANO",
                "ACNT_PRDT_CD",
                "INQR_STRT_DT",
                "INQR_END_DT",
                "SLL_BUY_DVSN_CD",
                "INQR_DVSN",
                "CCLD_DVSN",
                "INQR_DVSN_3",
            ),
            present=(
                "PDNO",
                "ORD_GNO_BRNO",
                "ODNO",
                "INQR_DVSN_1",
                "CTX_AREA_FK100",
                "CTX_AREA_NK100",
                "EXCG_ID_DVSN_CD",
            ),
        )
        account = self._account(q)
        start, end = q["INQR_STRT_DT"], q["INQR_END_DT"]
        venues = (
            (protocol.EXCG_KRX,)
            if self.sim.flavour is Flavour.PAPER
            else (protocol.EXCG_ALL, *protocol.EXCHANGES)
        )
        venue = q["EXCG_ID_DVSN_CD"].strip() or protocol.EXCG_KRX
        if venue not in venues:
            raise field_error("EXCG_ID_DVSN_CD", "/".join(venues))
        for name in ("INQR_STRT_DT", "INQR_END_DT"):
            if not re.fullmatch(r"\d{8}", q[name]):
                raise field_error(name, "YYYYMMDD")
        choices = {
            "SLL_BUY_DVSN_CD": ("00", "01", "02"),
            "CCLD_DVSN": ("00", "01", "02"),
            "INQR_DVSN": ("00", "01"),
        }
        for name, allowed in choices.items():
            if q[name] not in allowed:
                raise field_error(name, "/".join(allowed))
        side, ccld = q["SLL_BUY_DVSN_CD"], q["CCLD_DVSN"]
        odno = q["ODNO"].strip()
        odno = odno.zfill(10) if odno.isdigit() else odno
        engine = self.sim.engine
        chosen = [
            o
            for o in engine.orders.values()
            if o.account == account
            and start <= o.ord_dt <= end
            and side in (protocol.SLL_BUY_ALL, o.side.value)
            and (not q["PDNO"].strip() or o.pdno == q["PDNO"].strip())
            and (not odno or o.odno == odno)
            and (not q["ORD_GNO_BRNO"].strip() or o.orgno == q["ORD_GNO_BRNO"].strip())
            and venue in (protocol.EXCG_ALL, o.venue)
            and (
                ccld == protocol.CCLD_ALL
                or (ccld == protocol.CCLD_FILLED and o.filled_qty > 0)
                or (ccld == protocol.CCLD_UNFILLED and o.remaining > 0)
            )
        ]
        descending = q["INQR_DVSN"] == "00"  # 00 newest first, 01 oldest first
        chosen.sort(key=lambda o: o.odno, reverse=descending)
        rows = [
            order_row(o, engine.symbols[o.pdno].name if o.pdno in engine.symbols else o.pdno)
            for o in chosen
        ]
        size = protocol.PAGE_SIZE[(protocol.PATH_DAILY_CCLD, self.sim.flavour)]
        chunk, tr_cont, cursor = page(
            rows,
            key="odno",
            descending=descending,
            size=size,
            tr_cont=caller.tr_cont,
            nk=q["CTX_AREA_NK100"],
        )
        filled_qty = sum(o.filled_qty for o in chosen)
        filled_amount = sum(o.filled_amount for o in chosen)
        avg = Fraction(filled_amount, filled_qty) if filled_qty else Fraction(0)
        msg_cd, msg1 = MSG_INQUIRY_OK
        response = _json(
            {
                "ctx_area_fk100": f"{account[0]}^{account[1]}^{start}^{end}^{side}^{ccld}",
                "ctx_area_nk100": f"{account[0]}^{account[1]}^{cursor}" if cursor else "",
                "output1": chunk,
                "output2": {
                    "tot_ord_qty": str(sum(o.qty for o in chosen if o.kind != "cancel")),
                    "tot_ccld_qty": str(filled_qty),
                    "tot_ccld_amt": str(filled_amount),
                    "prsm_tlex_smtl": "0",
                    "pchs_avg_pric": _fixed(avg, 4),
                },
                "rt_cd": protocol.RT_CD_OK,
                "msg_cd": msg_cd,
                "msg1": msg1,
            }
        )
        response.headers["tr_cont"] = tr_cont
        return response

    async def balance(self, request: web.Request) -> web.Response:
        caller = self._caller(request, tr_ids={self._tr(protocol.TR_BALANCE)})
        q = self._query(
            request,
            filled=(
                "CANO",
                "ACNT_PRDT_CD",
                "AFHR_FLPR_YN",
                "INQR_DVSN",
                "UNPR_DVSN",
                "FUND_STTL_ICLD_YN",
                "FNCG_AMT_AUTO_RDPT_YN",
                "PRCS_DVSN",
            ),
            present=("OFL_YN", "CTX_AREA_FK100", "CTX_AREA_NK100"),
        )
        account = self._account(q)
        engine = self.sim.engine
        acct = engine.accounts[account]
        rows, bought_total, value_total = [], 0, 0
        for pdno, holding in sorted(acct.holdings.items()):
            if holding.qty <= 0:
                continue
            row, bought, value = holding_row(
                pdno, holding, engine.symbols.get(pdno), acct.orderable_qty(pdno)
            )
            rows.append(row)
            bought_total += bought
            value_total += value
        size = protocol.PAGE_SIZE[(protocol.PATH_BALANCE, self.sim.flavour)]
        chunk, tr_cont, cursor = page(
            rows,
            key="pdno",
            descending=False,
            size=size,
            tr_cont=caller.tr_cont,
            nk=q["CTX_AREA_NK100"],
        )
        total = value_total + acct.cash
        msg_cd, msg1 = MSG_INQUIRY_OK
        response = _json(
            {
                "ctx_area_fk100": f"{account[0]}^{account[1]}",
                "ctx_area_nk100": f"{account[0]}^{account[1]}^{cursor}" if cursor else "",
                "output1": chunk,
                # dnca_tot_amt is the start-of-day deposit (trades settle T+2); nxdy_excc_amt and
                # prvs_rcdl_excc_amt carry today's trades. KIS's exact D+1 rule is UNCONFIRMED.
                "output2": [
                    {
                        "dnca_tot_amt": str(acct.deposit),
                        "nxdy_excc_amt": str(acct.cash),
                        "prvs_rcdl_excc_amt": str(acct.cash),
                        "cma_evlu_amt": "0",
                        "bfdy_buy_amt": "0",
                        "thdt_buy_amt": str(acct.bought_amount),
                        "nxdy_auto_rdpt_amt": "0",
                        "bfdy_sll_amt": "0",
                        "thdt_sll_amt": str(acct.sold_amount),
                        "d2_auto_rdpt_amt": "0",
                        "bfdy_tlex_amt": "0",
                        "thdt_tlex_amt": "0",
                        "tot_loan_amt": "0",
                        "scts_evlu_amt": str(value_total),
                        "tot_evlu_amt": str(total),
                        "nass_amt": str(total),
                        "fncg_gld_auto_rdpt_yn": "N",
                        "pchs_amt_smtl_amt": str(bought_total),
                        "evlu_amt_smtl_amt": str(value_total),
                        "evlu_pfls_smtl_amt": str(value_total - bought_total),
                        "tot_stln_slng_chgs": "0",
                        "bfdy_tot_asst_evlu_amt": str(total),
                        "asst_icdc_amt": "0",
                        "asst_icdc_erng_rt": "0.00000000",
                    }
                ],
                "rt_cd": protocol.RT_CD_OK,
                "msg_cd": msg_cd,
                "msg1": msg1,
            }
        )
        response.headers["tr_cont"] = tr_cont
        return response

    def _quoted_symbol(self, request: web.Request) -> eng.Symbol:
        q = self._query(request, filled=("FID_COND_MRKT_DIV_CODE", "FID_INPUT_ISCD"))
        if q["FID_COND_MRKT_DIV_CODE"] not in MARKET_DIV_CODES:
            raise field_error("FID_COND_MRKT_DIV_CODE", "J, NX or UN")
        sym = self.sim.engine.symbols.get(q["FID_INPUT_ISCD"].strip())
        if sym is None:
            # UNCONFIRMED: how KIS answers a quote for a code it does not know.
            raise kis_error(
                REFUSAL_STATUS,
                eng.MSG_PRODUCT_NOT_FOUND,
                eng.REFUSAL_TEXT[eng.MSG_PRODUCT_NOT_FOUND],
            )
        return sym

    async def price(self, request: web.Request) -> web.Response:
        self._caller(request, tr_ids={self._tr(protocol.TR_PRICE)})
        sym = self._quoted_symbol(request)
        lower, upper = sym.limits
        diff = sym.price - sym.prev_close
        avg = Fraction(sym.amount, sym.volume) if sym.volume else Fraction(sym.price)
        msg_cd, msg1 = MSG_QUOTE_OK
        return _json(
            {
                "output": {
                    "iscd_stat_cls_code": "55",
                    "marg_rate": "20.00",
                    "rprs_mrkt_kor_name": "KOSPI",
                    "bstp_kor_isnm": "",
                    "temp_stop_yn": "Y" if sym.halted else "N",
                    "oprc_rang_cont_yn": "N",
                    "clpr_rang_cont_yn": "N",
                    "crdt_able_yn": "Y",
                    "grmn_rate_cls_code": "40",
                    "elw_pblc_yn": "N",
                    "stck_prpr": str(sym.price),
                    "prdy_vrss": str(diff),
                    "prdy_vrss_sign": sym.sign,
                    "prdy_ctrt": _pct(diff, sym.prev_close),
                    "acml_tr_pbmn": str(sym.amount),
                    "acml_vol": str(sym.volume),
                    "prdy_vrss_vol_rate": "0.00",
                    "stck_oprc": str(sym.open),
                    "stck_hgpr": str(sym.high),
                    "stck_lwpr": str(sym.low),
                    "stck_mxpr": str(upper),
                    "stck_llam": str(lower),
                    "stck_sdpr": str(sym.prev_close),
                    "wghn_avrg_stck_prc": _fixed(avg),
                    "hts_frgn_ehrt": "0.00",
                    "frgn_ntby_qty": "0",
                    "pgtr_ntby_qty": "0",
                    "aspr_unit": str(sym.tick),
                    "hts_deal_qty_unit_val": "1",
                    "lstn_stcn": "0",
                    "hts_avls": "0",
                    "per": "0.00",
                    "pbr": "0.00",
                    "stac_month": "12",
                    "vol_tnrt": "0.00",
                    "eps": "0.00",
                    "bps": "0.00",
                    "stck_shrn_iscd": sym.pdno,
                    "vi_cls_code": "Y" if sym.vi_until is not None else "N",
                    "ovtm_vi_cls_code": "N",
                    "last_ssts_cntg_qty": "0",
                    "invt_caful_yn": "N",
                    "mrkt_warn_cls_code": "00",
                    "short_over_yn": "N",
                    "sltr_yn": "N",
                    "mang_issu_cls_code": "N",
                    "ssts_yn": "Y",
                },
                "rt_cd": protocol.RT_CD_OK,
                "msg_cd": msg_cd,
                "msg1": msg1,
            }
        )

    async def holidays(self, request: web.Request) -> web.Response:
        """국내휴장일조회 (real accounts only): 20 days from BASS_DT, whether the market opens
        each (the exchange's day: weekends, and the closed dates /_sim/day was given)."""
        self._caller(request, tr_ids={protocol.TR_HOLIDAY})
        try:
            start = datetime.strptime(request.query.get("BASS_DT", ""), "%Y%m%d").date()
        except ValueError:
            raise field_error("BASS_DT", "YYYYMMDD expected") from None
        closed = self.sim.day.closed_dates if self.sim.day is not None else frozenset()
        rows = []
        for n in range(20):
            day = start + timedelta(days=n)
            opens = day.weekday() < 5 and day not in closed
            yn = "Y" if opens else "N"
            weekday = f"{(day.isoweekday() % 7) + 1:02d}"  # 01 Sunday .. 07 Saturday
            rows.append(
                {
                    "bass_dt": f"{day:%Y%m%d}",
                    "wday_dvsn_cd": weekday,
                    "bzdy_yn": yn,
                    "tr_day_yn": yn,
                    "opnd_yn": yn,
                    "sttl_day_yn": yn,
                }
            )
        return _json(
            {
                "output": rows,
                "rt_cd": protocol.RT_CD_OK,
                "msg_cd": "KIOK0000",
                "msg1": "정상처리 되었습니다.",
            }
        )

    async def asking_price(self, request: web.Request) -> web.Response:
        self._caller(request, tr_ids={self._tr(protocol.TR_ASKING_PRICE)})
        sym = self._quoted_symbol(request)
        lower, upper = sym.limits
        asks, bids = (
            _ladder(sym.price, step=+1, bound=upper, etf=sym.etf, first_step=True),
            _ladder(sym.price, step=-1, bound=lower, etf=sym.etf, first_step=False),
        )
        output1 = {"aspr_acpt_hour": self.sim.clock().strftime("%H%M%S")}
        ask_total = bid_total = 0
        for level in range(1, 11):
            ask, bid = asks[level - 1], bids[level - 1]
            ask_size = _depth(sym.pdno, ask, level) if ask else 0
            bid_size = _depth(sym.pdno, bid, -level) if bid else 0
            ask_total += ask_size
            bid_total += bid_size
            output1 |= {
                f"askp{level}": str(ask),
                f"bidp{level}": str(bid),
                f"askp_rsqn{level}": str(ask_size),
                f"bidp_rsqn{level}": str(bid_size),
                f"askp_rsqn_icdc{level}": "0",
                f"bidp_rsqn_icdc{level}": "0",
            }
        output1 |= {
            "total_askp_rsqn": str(ask_total),
            "total_bidp_rsqn": str(bid_total),
            "total_askp_rsqn_icdc": "0",
            "total_bidp_rsqn_icdc": "0",
            "ovtm_total_askp_icdc": "0",
            "ovtm_total_bidp_icdc": "0",
            "ovtm_total_askp_rsqn": "0",
            "ovtm_total_bidp_rsqn": "0",
            "ntby_aspr_rsqn": str(bid_total - ask_total),
            "new_mkop_cls_code": "20",
        }
        diff = sym.price - sym.prev_close
        output2 = {
            "antc_mkop_cls_code": "311",
            "stck_prpr": str(sym.price),
            "stck_oprc": str(sym.open),
            "stck_hgpr": str(sym.high),
            "stck_lwpr": str(sym.low),
            "stck_sdpr": str(sym.prev_close),
            "antc_cnpr": str(sym.price),
            "antc_cntg_vrss_sign": sym.sign,
            "antc_cntg_vrss": str(diff),
            "antc_cntg_prdy_ctrt": _pct(diff, sym.prev_close),
            "antc_vol": "0",
            "stck_shrn_iscd": sym.pdno,
            "vi_cls_code": "Y" if sym.vi_until is not None else "N",
        }
        msg_cd, msg1 = MSG_QUOTE_OK
        return _json(
            {
                "output1": output1,
                "output2": output2,
                "rt_cd": protocol.RT_CD_OK,
                "msg_cd": msg_cd,
                "msg1": msg1,
            }
        )


def _ladder(price: int, *, step: int, bound: int, etf: bool, first_step: bool) -> list[int]:
    """Ten price levels from `price` one tick at a time toward `bound`; 0 past the limit."""
    levels, p = [], price
    for i in range(10):
        if first_step or i > 0:
            if (step > 0 and p >= bound) or (step < 0 and p <= bound):
                levels.append(0)
                p = bound
                continue
            p = krx.round_to_tick(p + step, direction="up" if step > 0 else "down", etf=etf)
        levels.append(p)
    return levels


def _depth(pdno: str, price: int, level: int) -> int:
    """A stable, made-up size for a book level (it must not consume the engine's random walk)."""
    return zlib.crc32(f"{pdno}:{price}:{level}".encode()) % 5_000 + 100


async def _read_json(request: web.Request, *, oauth: bool = False) -> object:
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        if oauth:
            raise oauth_error(
                INPUT_ERROR_STATUS, EGW_BAD_OAUTH_REQUEST, "invalid request body"
            ) from None
        raise kis_error(
            INPUT_ERROR_STATUS, MSG_BAD_JSON, "JSON 형식이 올바르지 않습니다."
        ) from None


def _drop(request: web.Request, entry: dict) -> None:
    """Close the connection without an answer."""
    entry["status"] = 0
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


def _rewritten(
    response: web.StreamResponse, change: Callable[[object], object]
) -> web.StreamResponse:
    """The same JSON answer changed by `change`, KIS's response headers kept (any other answer
    as it is)."""
    if not (isinstance(response, web.Response) and response.content_type == "application/json"):
        return response
    body = response.body
    if not isinstance(body, bytes | bytearray):  # a payload object, not JSON text
        return response
    return _kis_headers_kept(_json(change(json.loads(body)), status=response.status), response)


def _kis_headers_kept(response: web.Response, original: web.StreamResponse) -> web.Response:
    """`response` with the KIS response headers `original` carried."""
    for name in ("tr_id", "tr_cont", "gt_uid"):
        if name in original.headers:
            response.headers[name] = original.headers[name]
    return response


def _without_key(value: object, name: str) -> object:
    if isinstance(value, dict):
        return {k: _without_key(v, name) for k, v in value.items() if str(k).lower() != name}
    if isinstance(value, list):
        return [_without_key(v, name) for v in value]
    return value


def _omitting(response: web.StreamResponse, field_name: str) -> web.StreamResponse:
    return _rewritten(response, lambda body: _without_key(body, field_name.lower()))


async def _ledger_limited(request: web.Request) -> web.Response:
    raise kis_error(RATE_LIMIT_STATUS, protocol.EGW_LEDGER_RATE_LIMIT, LEDGER_LIMIT_TEXT)


def _non_json(answer: web.StreamResponse | None) -> web.Response:
    """HTTP 200 that no JSON reader can take: the answer cut in half, or a page from something
    standing in front of KIS."""
    body = answer.body if isinstance(answer, web.Response) else None
    if answer is not None and isinstance(body, bytes | bytearray) and body:
        return _kis_headers_kept(
            web.Response(status=200, body=body[: len(body) // 2], content_type="application/json"),
            answer,
        )
    return web.Response(
        status=200,
        content_type="text/html",
        text="<html><body>Service temporarily unavailable</body></html>",
    )


def _with_value(value: object, name: str, replacement: str) -> object:
    if isinstance(value, dict):
        return {
            k: replacement if str(k).lower() == name else _with_value(v, name, replacement)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_with_value(v, name, replacement) for v in value]
    return value


def _garbling(response: web.StreamResponse, field_name: str, value: str) -> web.StreamResponse:
    return _rewritten(response, lambda body: _with_value(body, field_name.lower(), value))


def _failure(faults: Faults) -> web.Response:
    """What a failing gateway sends: by default no KIS body, so a client cannot mistake it for
    an answer; with error_msg_cd, KIS's error shape on a 5xx (a code the client may not know)."""
    if faults.error_msg_cd:
        return _json(
            {"rt_cd": ERROR_RT_CD, "msg_cd": faults.error_msg_cd, "msg1": faults.error_msg1},
            status=faults.error_status,
        )
    return web.Response(
        status=faults.error_status, text="simulated upstream failure", content_type="text/plain"
    )


# --- WebSocket ---------------------------------------------------------------------------------
class StreamServer:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _json(
                {
                    "rt_cd": ERROR_RT_CD,
                    "msg_cd": MSG_UNKNOWN_PATH,
                    "msg1": f"{exc.reason}: {request.path}",
                },
                status=exc.status,
            )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        if sim.mono() < sim.faults.outage_until:
            return _json(
                {"rt_cd": ERROR_RT_CD, "msg_cd": "", "msg1": "service unavailable"}, status=503
            )
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = sim.open_connection(ws)
        writer = asyncio.create_task(conn.write_loop())
        pinger = asyncio.create_task(self._ping(conn))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    # KIS's own sample answers PINGPONG with a pong frame carrying the message.
                    if b"PINGPONG" in msg.data:
                        sim.stats.pings_echoed += 1
                elif msg.type is WSMsgType.BINARY:
                    conn.send(_ack("", "", WS_BAD_REQUEST))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sim.connections.discard(conn)
            pinger.cancel()
            writer.cancel()
            await ws.close()
        return ws

    async def _ping(self, conn: Connection) -> None:
        while True:
            await asyncio.sleep(max(self.sim.limits.ping_s, 0.01))
            stamp = self.sim.clock().strftime("%Y%m%d%H%M%S")
            conn.send(json.dumps({"header": {"tr_id": "PINGPONG", "datetime": stamp}}))
            self.sim.stats.pings_sent += 1

    def _on_text(self, conn: Connection, text: str) -> None:
        sim = self.sim
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            conn.send(_ack("", "", WS_BAD_REQUEST))
            return
        header = message.get("header") if isinstance(message, dict) else None
        if not isinstance(header, dict):
            conn.send(_ack("", "", WS_BAD_REQUEST))
            return
        if header.get("tr_id") == "PINGPONG":
            sim.stats.pings_echoed += 1
            return
        body = message.get("body")
        request = body.get("input") if isinstance(body, dict) else None
        request = request if isinstance(request, dict) else {}
        tr_id, tr_key = request.get("tr_id"), request.get("tr_key")
        if not (
            isinstance(tr_id, str)
            and isinstance(tr_key, str)
            and tr_key
            and header.get("tr_type") in ("1", "2")
            and header.get("custtype") in ("P", "B")
            and header.get("content-type") == "utf-8"
        ):
            conn.send(_ack(str(tr_id or ""), str(tr_key or ""), WS_BAD_REQUEST))
            return
        approval = header.get("approval_key")
        if not isinstance(approval, str) or approval not in sim.gateway.approvals:
            conn.send(_ack(tr_id, tr_key, WS_INVALID_APPROVAL))
            return
        notice_tr = protocol.notice_tr_id(sim.flavour)
        if tr_id not in protocol.WS_TR_TRADES | {notice_tr}:
            conn.send(_ack(tr_id, tr_key, (WS_BAD_REQUEST[0], f"invalid tr_id {tr_id}")))
            return
        subscription = (tr_id, tr_key)
        encrypt = tr_id == notice_tr
        if header["tr_type"] == "2":
            if conn.subscriptions.pop(subscription, None) is None:
                conn.send(_ack(tr_id, tr_key, WS_NOT_SUBSCRIBED))
            else:
                conn.send(
                    _ack(
                        tr_id,
                        tr_key,
                        (protocol.WS_UNSUBSCRIBED, "UNSUBSCRIBE SUCCESS"),
                        ok=True,
                        conn=conn,
                        encrypt=encrypt,
                    )
                )
            return
        if subscription in conn.subscriptions:
            conn.send(_ack(tr_id, tr_key, (protocol.WS_ALREADY_SUBSCRIBED, "ALREADY IN SUBSCRIBE")))
            return
        used = sum(
            1 for c in sim.connections for key in c.subscriptions.values() if key == approval
        )
        if used >= protocol.WS_MAX_SUBSCRIPTIONS:
            conn.send(_ack(tr_id, tr_key, (protocol.WS_MAX_SUBSCRIBE, "MAX SUBSCRIBE OVER")))
            return
        conn.subscriptions[subscription] = approval
        conn.send(
            _ack(
                tr_id,
                tr_key,
                (protocol.WS_SUBSCRIBED, "SUBSCRIBE SUCCESS"),
                ok=True,
                conn=conn,
                encrypt=encrypt,
            )
        )


def _ack(
    tr_id: str,
    tr_key: str,
    message: tuple[str, str],
    *,
    ok: bool = False,
    conn: Connection | None = None,
    encrypt: bool = False,
) -> str:
    body: dict = {
        "rt_cd": protocol.RT_CD_OK if ok else ERROR_RT_CD,
        "msg_cd": message[0],
        "msg1": message[1],
    }
    if ok and conn is not None:
        body["output"] = {"iv": conn.iv, "key": conn.key}
    return json.dumps(
        {
            "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": "Y" if encrypt else "N"},
            "body": body,
        }
    )


# --- the control API (/_sim/) ------------------------------------------------------------------
async def _control_answer(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        return _json({"ok": False, "error": str(exc)}, status=400)
    except web.HTTPException as exc:
        return _json(
            {"ok": False, "error": f"{exc.reason}: {request.method} {request.path}"},
            status=exc.status,
        )
    except Exception:
        logger.exception("kis_sim control error on %s %s", request.method, request.path)
        return _json({"ok": False, "error": "internal error: see the simulator's log"}, status=500)


def _c_int(
    payload: dict, name: str, *, default: int | None = None, minimum: int | None = None
) -> int:
    value = payload.get(name, default)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"{name} must be a whole number")
    if minimum is not None and value < minimum:
        raise ControlError(f"{name} must be at least {minimum}")
    return value


def _c_num(payload: dict, name: str, *, minimum: float = 0.0) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ControlError(f"{name} must be a number ≥ {minimum}")
    return float(value)


def _c_bool(payload: dict, name: str) -> bool:
    value = payload.get(name)
    if not isinstance(value, bool):
        raise ControlError(f"{name} must be true or false")
    return value


def _c_text(
    payload: dict, name: str, *, pattern: str | None = None, default: str | None = None
) -> str:
    value = payload.get(name, default)
    if not isinstance(value, str) or not value or "^" in value or "|" in value:
        raise ControlError(f"{name} must be a non-empty string without ^ or |")
    if pattern and not re.fullmatch(pattern, value):
        raise ControlError(f"{name} must match {pattern}")
    return value


class ControlApi:
    """/_sim/: set the scene, move prices, inject faults, read the book. No KIS headers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_sim/reset", self.reset),
            web.post("/_sim/apps", self.apps),
            web.post("/_sim/accounts", self.accounts),
            web.post("/_sim/prices", self.prices),
            web.post("/_sim/gap", self.gap),
            web.post("/_sim/step", self.step),
            web.post("/_sim/session", self.session),
            web.post("/_sim/limits", self.limits),
            web.post("/_sim/day", self.day),
            web.delete("/_sim/day", self.day_off),
            web.post("/_sim/faults", self.faults),
            web.delete("/_sim/faults", self.clear_faults),
            web.get("/_sim/book", self.book),
            web.post("/_sim/clock", self.clock),
            web.delete("/_sim/clock", self.clock_clear),
        ]

    @staticmethod
    async def _payload(request: web.Request) -> dict:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ControlError("the body is not JSON") from None
        if not isinstance(payload, dict):
            raise ControlError("the body must be a JSON object")
        return payload

    async def reset(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        seed = _c_int(payload, "seed", default=self.sim.config.seed)
        self.sim.reset(seed=seed)
        return _json({"ok": True, "seed": seed})

    async def apps(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        appkey, appsecret = _c_text(payload, "appkey"), _c_text(payload, "appsecret")
        self.sim.gateway.apps[appkey] = appsecret
        return _json({"ok": True, "app": app_fingerprint(appkey)})

    async def accounts(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        holdings = payload.get("holdings", [])
        if not isinstance(holdings, list) or not all(isinstance(h, dict) for h in holdings):
            raise ControlError("holdings must be a list of {pdno, qty, avg_price}")
        parsed = []
        for h in holdings:
            try:
                avg = Fraction(Decimal(str(h.get("avg_price", 0))))
            except (InvalidOperation, ValueError):
                raise ControlError("avg_price must be a number") from None
            parsed.append(
                (_c_text(h, "pdno", pattern=r"[0-9A-Z]{6,12}"), _c_int(h, "qty", minimum=0), avg)
            )
        try:
            self.sim.engine.set_account(
                cano=_c_text(payload, "cano", pattern=r"\d{8}"),
                acnt_prdt_cd=_c_text(payload, "acnt_prdt_cd", pattern=r"\d{2}", default="01"),
                cash=_c_int(payload, "cash", minimum=0),
                hts_id=_c_text(payload, "hts_id"),
                name=_c_text(payload, "name", default=payload.get("hts_id") or "-"),
                holdings=parsed,
            )
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        return _json({"ok": True})

    async def prices(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        pdno = _c_text(payload, "pdno", pattern=r"[0-9A-Z]{6,12}")
        path = payload.get("path")
        if path is not None and not (
            isinstance(path, list)
            and all(isinstance(p, int) and not isinstance(p, bool) for p in path)
        ):
            raise ControlError("path must be a list of whole prices")

        def given(name: str, read: Callable) -> Any:  # None (unchanged) when not given
            return None if payload.get(name) is None else read(payload, name)

        try:
            events = self.sim.engine.set_price(
                pdno,
                now=self.sim.clock(),
                path=path,
                price=given("price", lambda p, n: _c_int(p, n, minimum=1)),
                prev_close=given("prev_close", lambda p, n: _c_int(p, n, minimum=1)),
                etf=given("etf", _c_bool),
                halted=given("halted", _c_bool),
                name=given("name", _c_text),
            )
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        self.sim.publish(events)
        return _json({"ok": True} | self._quote(pdno) | _counts(events))

    async def gap(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        pdno = _c_text(payload, "pdno")
        raw = payload.get("pct")
        try:
            if isinstance(raw, bool):
                raise InvalidOperation
            pct = Decimal(str(raw))
        except (InvalidOperation, ValueError):
            raise ControlError("pct must be a number") from None
        if not pct.is_finite():
            raise ControlError("pct must be a number")
        try:
            events = self.sim.engine.gap(pdno, pct, now=self.sim.clock())
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        self.sim.publish(events)
        return _json({"ok": True} | self._quote(pdno) | _counts(events))

    async def step(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        pdno = payload.get("pdno")
        if pdno is not None:
            pdno = _c_text(payload, "pdno")
        steps = _c_int(payload, "steps", default=1, minimum=0)
        try:
            events = self.sim.engine.step(now=self.sim.clock(), pdno=pdno, steps=steps)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        self.sim.publish(events)
        prices = {p: s.price for p, s in sorted(self.sim.engine.symbols.items())}
        return _json({"ok": True, "prices": prices} | _counts(events))

    async def session(self, request: web.Request) -> web.Response:
        """{"open": true} continuous trading, {"open": false} closed, {"open": false, "auction":
        true} a call auction; an auction's end matches its orders at one price (the symbol's
        price then) and publishes the trades and fill notices. "nxt": true/false opens or
        closes Nextrade's market (by default it follows KRX's)."""
        payload = await self._payload(request)
        auction = _c_bool(payload, "auction") if "auction" in payload else False
        nxt = _c_bool(payload, "nxt") if "nxt" in payload else None
        try:
            events = self.sim.engine.set_session(
                open_=_c_bool(payload, "open"), auction=auction, now=self.sim.clock()
            )
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        if nxt is not None:
            self.sim.engine.nxt_open = nxt
        self.sim.publish(events)
        return _json(
            {"ok": True, "open": self.sim.engine.session_open, "auction": self.sim.engine.auction}
            | _counts(events)
        )

    async def day(self, request: web.Request) -> web.Response:
        """{"open": "09:00", "close": "15:30", "closed": ["2026-12-25"]} (each optional): the
        session follows the exchange's day on the simulator's clock from now on (day.py):
        auctions, continuous trading, the close ending every working order, holidays refused
        as not a market day. DELETE /_sim/day (or a reset): sessions set by hand again."""
        payload = await self._payload(request)
        try:
            day = KrxDay(
                open=dt_time.fromisoformat(payload.get("open") or "09:00"),
                close=dt_time.fromisoformat(payload.get("close") or "15:30"),
                closed_dates=frozenset(date.fromisoformat(d) for d in payload.get("closed", [])),
            )
        except (TypeError, ValueError) as exc:
            raise ControlError(f"day: {exc}") from None
        if day.close <= day.open:
            raise ControlError("day: the close must come after the open")
        self.sim.day, self.sim.day_phase = day, None
        self.sim.follow_day()
        krx, nxt = self.sim.day_phase or (None, None)
        return _json({"ok": True, "phase": krx, "nxt_phase": nxt})

    async def day_off(self, request: web.Request) -> web.Response:
        self.sim.day = self.sim.day_phase = None
        self.sim.engine.market_day = True
        self.sim.engine.nxt_open = None
        return _json({"ok": True})

    async def limits(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        limits = self.sim.limits
        known = {f.name for f in fields(Limits)}
        unknown = set(payload) - known
        if unknown:
            raise ControlError(f"unknown limits {sorted(unknown)}; known: {sorted(known)}")
        updates: dict = {}
        for name in ("rps", "max_fill_per_step"):
            if name in payload:
                updates[name] = _c_int(payload, name, minimum=0)
        for name in ("token_interval_s", "token_ttl_s", "token_reuse_s", "ping_s"):
            if name in payload:
                updates[name] = _c_num(payload, name)
        for name in ("reject_notices", "upper_keys", "vi"):
            if name in payload:
                updates[name] = _c_bool(payload, name)
        for name, value in updates.items():
            setattr(limits, name, value)
        self.sim.apply_limits()
        return _json({"ok": True} | asdict(limits))

    COUNTED_FAULTS = (
        "error_5xx_next",
        "timeout_next",
        "drop_next",
        "lost_next",
        "ledger_limit_next",
        "non_json_next",
        "omit_next",
        "garble_next",
        "notice_repeat_next",
    )
    TEXT_FAULTS = {
        "omit_field": r"[A-Za-z0-9_]{1,40}",
        "garble_field": r"[A-Za-z0-9_]{1,40}",
        "garble_value": r"[^\x00-\x1f]{0,40}",
        "error_msg_cd": r"[A-Z0-9]{0,12}",
        "error_msg1": r"[^\x00-\x1f]{0,200}",
        "path": r"[A-Za-z0-9_/-]{0,100}",
    }

    async def faults(self, request: web.Request) -> web.Response:
        """Set faults (the fields of Faults): each *_next counts the requests (or, for
        notice_repeat_next, the fill notices) that meet it; `path` limits them to requests whose
        path contains it; error_msg_cd/error_msg1 give a 5xx KIS's body; garble_next sets
        garble_field to garble_value in the answer; `after` lets the request take effect
        first; outage_s refuses everything for that long; ws_drop closes every WebSocket;
        approvals_expire makes every WebSocket approval key issued so far unknown (open
        subscriptions go on; a new one with such a key is refused, OPSP0011)."""
        payload = await self._payload(request)
        known = {
            "latency_ms",
            "error_5xx_rate",
            "error_status",
            "timeout_s",
            "outage_s",
            "after",
            "ws_drop",
            "approvals_expire",
            *self.TEXT_FAULTS,
            *self.COUNTED_FAULTS,
        }
        unknown = set(payload) - known
        if unknown:
            raise ControlError(f"unknown faults {sorted(unknown)}; known: {sorted(known)}")
        faults = self.sim.faults
        for name in self.COUNTED_FAULTS:
            if name in payload:
                setattr(faults, name, _c_int(payload, name, minimum=0))
        for name, pattern in self.TEXT_FAULTS.items():
            if name in payload:
                value = payload[name]
                if not isinstance(value, str) or not re.fullmatch(pattern, value):
                    raise ControlError(f"{name} must be a string matching {pattern}")
                if name.endswith("_field") and not value:
                    raise ControlError(f"{name} must name a field")
                setattr(faults, name, value)
        for name in ("latency_ms", "timeout_s"):
            if name in payload:
                setattr(faults, name, _c_num(payload, name))
        if "error_5xx_rate" in payload:
            rate = _c_num(payload, "error_5xx_rate")
            if rate > 1:
                raise ControlError("error_5xx_rate is a probability, 0 to 1")
            faults.error_5xx_rate = rate
        if "error_status" in payload:
            status = _c_int(payload, "error_status")
            if not 500 <= status <= 599:
                raise ControlError("error_status must be a 5xx status")
            faults.error_status = status
        if "after" in payload:
            faults.after = _c_bool(payload, "after")
        if "outage_s" in payload:
            faults.outage_until = self.sim.mono() + _c_num(payload, "outage_s")
            self.sim.drop_connections()
        if payload.get("ws_drop") is True:
            self.sim.drop_connections()
        if payload.get("approvals_expire") is True:
            self.sim.gateway.approvals.clear()
        return _json({"ok": True} | self.sim.faults_view())

    async def clock(self, request: web.Request) -> web.Response:
        """{"start": ISO 8601 with an offset, "origin": Unix seconds (default now), "speed": 1}:
        the simulator's day runs from `start` (core.clock.ShiftedClock), as AEGIS_CLOCK_START
        makes Aegis's processes do, until DELETE /_sim/clock or a reset."""
        payload = await self._payload(request)
        try:
            start = datetime.fromisoformat(_c_text(payload, "start"))
            origin = _c_num(payload, "origin") if payload.get("origin") is not None else None
            speed = _c_num(payload, "speed") if payload.get("speed") is not None else 1.0
            self.sim.clock_set(aegis_clock.ShiftedClock(start, origin=origin, speed=speed))
        except ValueError as exc:
            raise ControlError(f"clock: {exc}") from None
        return _json({"ok": True, "now": self.sim.clock().isoformat()})

    async def clock_clear(self, request: web.Request) -> web.Response:
        self.sim.clock_set(None)
        return _json({"ok": True, "now": self.sim.clock().isoformat()})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim.faults = Faults()
        return _json({"ok": True} | self.sim.faults_view())

    async def book(self, request: web.Request) -> web.Response:
        with_requests = request.query.get("requests", "1") not in ("0", "false", "no")
        return _json(self.sim.book(with_requests=with_requests))

    def _quote(self, pdno: str) -> dict:
        sym = self.sim.engine.symbols[pdno]
        lower, upper = sym.limits
        return {
            "pdno": pdno,
            "price": sym.price,
            "prev_close": sym.prev_close,
            "lower_limit": lower,
            "upper_limit": upper,
        }


def _counts(events: list) -> dict:
    return {
        "ticks": sum(isinstance(e, eng.Tick) for e in events),
        "notices": sum(isinstance(e, eng.Notice) for e in events),
        "fills": sum(isinstance(e, eng.Notice) and e.filled for e in events),
    }


# --- running ------------------------------------------------------------------------------------
def rest_app(sim: Simulator) -> web.Application:
    api = RestApi(sim)
    app = web.Application(middlewares=[api.middleware])
    app.add_routes(api.routes() + ControlApi(sim).routes())
    return app


def ws_app(sim: Simulator) -> web.Application:
    streams = StreamServer(sim)
    app = web.Application(middlewares=[streams.middleware])
    app.router.add_get(protocol.WS_PATH, streams.handle)
    app.router.add_get(protocol.WS_PATH + "/{tail:.*}", streams.handle)
    return app


async def _follow_day(sim: Simulator, every_s: float = 0.05) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            sim.follow_day()
            sim.publish(sim.engine.vi_due(sim.clock()))
        except Exception:
            logger.exception("kis_sim day follow failed")


async def _auto_step(sim: Simulator, tick_ms: int) -> None:
    while True:
        await asyncio.sleep(tick_ms / 1000)
        try:
            sim.publish(sim.engine.step(now=sim.clock()))
        except Exception:
            logger.exception("kis_sim automatic step failed")


class _NoQuotedBytes(logging.Filter):
    """aiohttp logs a malformed HTTP request with a traceback quoting the offending bytes, which
    may be a credential header: keep the line, drop the quote.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {type(record.exc_info[1]).__name__}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


async def serve(
    config: SimulatorConfig,
    *,
    host: str,
    port: int,
    ws_port: int,
    stop: asyncio.Event,
    ready: Callable[[str, int, int], None],
) -> None:
    """Run both servers until `stop` is set; `ready(host, port, ws_port)` once both listen
    (ports 0 pick free ones, and `ready` is told which).
    """
    logging.getLogger("aiohttp.server").addFilter(_NoQuotedBytes())
    sim = Simulator(config)
    runners = [
        web.AppRunner(rest_app(sim), access_log=None, shutdown_timeout=2.0),
        web.AppRunner(ws_app(sim), access_log=None, shutdown_timeout=2.0),
    ]
    ticker = day = None
    try:
        bound = []
        for runner, wanted in zip(runners, (port, ws_port)):
            await runner.setup()
            # aiohttp turns TCP_NODELAY on for every connection (PERFORMANCE.md).
            await web.TCPSite(runner, host, wanted).start()
            bound.append(runner.addresses[0][1])
        if config.tick_ms > 0:
            ticker = asyncio.create_task(_auto_step(sim, config.tick_ms))
        day = asyncio.create_task(_follow_day(sim))
        ready(host, bound[0], bound[1])
        await stop.wait()
    finally:
        if ticker is not None:
            ticker.cancel()
        if day is not None:
            day.cancel()
        sim.drop_connections()
        for runner in reversed(runners):
            await runner.cleanup()
