"""The KIS REST client.

Every request takes a slot from the shared per-app-key rate limit, carries the shared token, and
reads the answer case-insensitively. EGW00201 (over the per-second limit) is retried a bounded
number of times with backoff; an expired or invalid token is replaced once. An order whose
outcome is unknown (timeout or dropped connection after sending) raises KisAmbiguousOutcome and
is never resent: KIS has no client order id, so only the daily orders inquiry can settle it.
"""

import datetime as dt
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from . import protocol
from .breaker import Breakers, Transition
from .config import AppCredentials, KisConfig
from .errors import (
    KisAmbiguousOutcome,
    KisError,
    KisProtocolError,
    KisRateLimited,
    KisTokenExpired,
    KisTokenInvalid,
    KisTokenRateLimited,
    KisUnavailable,
    error_for,
)
from .ratelimit import SharedRateLimiter
from .tokens import Credential, CredentialStore
from .transport import ConnectFailed, ExchangeFailed, Transport

logger = logging.getLogger("aegis.kis")

MAX_PAGES = 500
SEOUL = dt.timezone(dt.timedelta(hours=9))


def lower_keys(value):
    """The same JSON with every object key lower-cased: KIS's key case is not to be relied on."""
    if isinstance(value, dict):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


# Bounds of what the ledger accepts from KIS: shares and KRW are whole numbers well below this.
MAX_VALUE = 10**12
_ASCII_DIGITS = frozenset("0123456789")
_SYMBOL = re.compile(r"[0-9A-Z]{6}")
_ODNO = re.compile(r"[0-9]{1,20}")
_DATE = re.compile(r"[0-9]{8}")


def _text(record: dict, name: str) -> str:
    raw = record.get(name)
    if raw is None:
        raise KisProtocolError(f"KIS answer lacks {name}")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise KisProtocolError(f"KIS answer has a {type(raw).__name__} for {name}: {raw!r}")
    return str(raw).strip()


def _digits(text: str) -> bool:
    return bool(text) and set(text) <= _ASCII_DIGITS


def _count(record: dict, name: str) -> int:
    """A required whole number the ledger relies on (shares, KRW): ASCII digits only, no sign,
    fraction or exponent, below MAX_VALUE. Anything else names the field in a protocol error."""
    text = _text(record, name)
    if not text:
        raise KisProtocolError(f"KIS answer has an empty {name}")
    if not _digits(text) or len(text) > 20:
        raise KisProtocolError(f"KIS answer has {name} {text[:40]!r}, not a whole number ≥ 0")
    value = int(text)
    if value >= MAX_VALUE:
        raise KisProtocolError(f"KIS answer has {name} {value}, beyond {MAX_VALUE}")
    return value


def _signed(record: dict, name: str) -> int:
    """A required whole number that may be below zero (a cash figure): digits after one '-'."""
    text = _text(record, name)
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text)
    if not _digits(body) or len(body) > 20 or int(body) >= MAX_VALUE:
        raise KisProtocolError(
            f"KIS answer has {name} {text[:40]!r}, not a whole number within ±{MAX_VALUE}"
        )
    return sign * int(body)


def _average(record: dict, name: str) -> Decimal:
    """A required price average, kept as Decimal: digits with at most one decimal point."""
    text = _text(record, name)
    whole, dot, fraction = text.partition(".")
    if (
        not _digits(whole)
        or (dot and not _digits(fraction))
        or len(text) > 32
        or int(whole) >= MAX_VALUE
    ):
        raise KisProtocolError(f"KIS answer has {name} {text[:40]!r}, not a price ≥ 0")
    return Decimal(text)


def _loose(record: dict, name: str) -> int:
    """A figure the ledger does not use: missing or empty reads as 0, but a value that is there
    must still be a bounded whole number (never an exponent that crashes the parser)."""
    if record.get(name) in ("", None):
        return 0
    return _signed(record, name)


def _odno(record: dict, name: str, *, required: bool = True) -> str:
    text = _text(record, name) if required or record.get(name) is not None else ""
    if not text and not required:
        return ""
    if not _ODNO.fullmatch(text):
        raise KisProtocolError(f"KIS answer has {name} {text[:40]!r}, not an order number")
    return text


def _ord_tmd(record: dict, name: str = "ord_tmd") -> str:
    text = _text(record, name)
    if (
        len(text) != 6
        or not _digits(text)
        or int(text[:2]) > 23
        or int(text[2:4]) > 59
        or int(text[4:]) > 59
    ):
        raise KisProtocolError(f"KIS answer has {name} {text[:40]!r}, not a time HHMMSS")
    return text


def _symbol(record: dict, name: str = "pdno") -> str:
    text = _text(record, name)
    if not _SYMBOL.fullmatch(text):
        raise KisProtocolError(f"KIS answer has {name} {text[:40]!r}, not a 6-character code")
    return text


@dataclass(frozen=True)
class OrderAck:
    odno: str
    org_no: str
    ord_tmd: str


@dataclass(frozen=True)
class DailyOrder:
    ord_dt: str
    odno: str
    orgn_odno: str
    side: str  # "BUY" or "SELL"
    symbol: str
    ord_qty: int
    ord_unpr: int
    ord_tmd: str
    tot_ccld_qty: int
    avg_prvs: Decimal
    tot_ccld_amt: int
    rmn_qty: int
    cncl_yn: str
    rjct_qty: int
    ord_dvsn_cd: str
    org_no: str = ""  # ord_gno_brno: the KRX_FWDG_ORD_ORGNO a cancel or a modify needs
    venue: str = ""  # excg_id_dvsn_cd (KRX, NXT, SOR); "" when KIS does not say


@dataclass(frozen=True)
class BadDailyOrder:
    """A daily orders row this client cannot read: in place of its DailyOrder when asked to keep
    bad rows. `odno` is "" when even the order number is unreadable; `reason` names the field."""

    odno: str
    reason: str


def daily_order_from(r: dict) -> DailyOrder:
    """One output1 row of the daily orders inquiry (keys lower-cased). Every field the ledger
    relies on is required and bounded: KisProtocolError naming the field otherwise."""
    side = _text(r, "sll_buy_dvsn_cd")
    if side not in (protocol.SLL_BUY_SELL, protocol.SLL_BUY_BUY):
        raise KisProtocolError(
            f"KIS answer has sll_buy_dvsn_cd {side[:40]!r}, not "
            f"{protocol.SLL_BUY_SELL} or {protocol.SLL_BUY_BUY}"
        )
    ord_dt = _text(r, "ord_dt")
    if not _DATE.fullmatch(ord_dt):
        raise KisProtocolError(f"KIS answer has ord_dt {ord_dt[:40]!r}, not a date YYYYMMDD")
    return DailyOrder(
        ord_dt=ord_dt,
        odno=_odno(r, "odno"),
        orgn_odno=_odno(r, "orgn_odno", required=False),
        side="SELL" if side == protocol.SLL_BUY_SELL else "BUY",
        symbol=_symbol(r, "pdno"),
        ord_qty=_count(r, "ord_qty"),
        ord_unpr=_count(r, "ord_unpr"),
        ord_tmd=_ord_tmd(r),
        tot_ccld_qty=_count(r, "tot_ccld_qty"),
        avg_prvs=_average(r, "avg_prvs"),
        tot_ccld_amt=_count(r, "tot_ccld_amt"),
        rmn_qty=_count(r, "rmn_qty"),
        cncl_yn=str(r.get("cncl_yn") or ""),
        rjct_qty=_count(r, "rjct_qty"),
        ord_dvsn_cd=str(r.get("ord_dvsn_cd") or ""),
        org_no=str(r.get("ord_gno_brno") or ""),
        venue=str(r.get("excg_id_dvsn_cd") or "").strip()[:3],
    )


def bad_daily_order(r: object, exc: KisProtocolError) -> BadDailyOrder:
    """What can be said of a row daily_order_from refused: its order number if readable."""
    try:
        odno = _odno(r, "odno") if isinstance(r, dict) else ""
    except KisProtocolError:
        odno = ""
    return BadDailyOrder(odno=odno, reason=str(exc))


@dataclass(frozen=True)
class Holding:
    symbol: str
    name: str
    hldg_qty: int
    ord_psbl_qty: int
    pchs_avg_pric: Decimal
    prpr: int


def holding_from(r: dict) -> Holding:
    """One output1 row of the balance inquiry (keys lower-cased); hldg_qty, ord_psbl_qty and
    pchs_avg_pric are required and bounded."""
    return Holding(
        symbol=_symbol(r, "pdno"),
        name=str(r.get("prdt_name") or ""),
        hldg_qty=_count(r, "hldg_qty"),
        ord_psbl_qty=_count(r, "ord_psbl_qty"),
        pchs_avg_pric=_average(r, "pchs_avg_pric"),
        prpr=_loose(r, "prpr"),
    )


def order_ack_from(out: dict, *, new_order: bool) -> OrderAck:
    """The output of an accepted order. A new order's answer without a readable ODNO cannot be
    told from an order that went nowhere: KisAmbiguousOutcome, to be settled against the daily
    orders inquiry. Its ord_tmd is not used (the inquiry's is). A cancel's or modify's answer is
    not used by the ledger (the daily orders inquiry confirms it) and is read as it comes."""
    if not new_order:
        return OrderAck(
            odno=str(out.get("odno") or ""),
            org_no=str(out.get("krx_fwdg_ord_orgno") or ""),
            ord_tmd=str(out.get("ord_tmd") or ""),
        )
    try:
        odno = _odno(out, "odno")
    except KisProtocolError as exc:
        raise KisAmbiguousOutcome(
            f"KIS accepted the order but its answer is unreadable "
            f"({exc}): settle it against the daily orders inquiry, do "
            "not resend"
        ) from None
    return OrderAck(
        odno=odno,
        org_no=str(out.get("krx_fwdg_ord_orgno") or ""),
        ord_tmd=str(out.get("ord_tmd") or ""),
    )


@dataclass(frozen=True)
class Balance:
    holdings: list[Holding]
    dnca_tot_amt: int
    nxdy_excc_amt: int
    tot_evlu_amt: int
    # The D+2 deposit: the start-of-day deposit with today's trades settled, what can be spent.
    prvs_rcdl_excc_amt: int = 0


def balance_from(holdings: list[Holding], summary: dict) -> Balance:
    """The balance from its holdings and output2's summary: the D+2 deposit (recorded by each
    reconciliation) is required; the other cash figures, unused by the ledger, may be missing."""
    return Balance(
        holdings=holdings,
        dnca_tot_amt=_loose(summary, "dnca_tot_amt"),
        nxdy_excc_amt=_loose(summary, "nxdy_excc_amt"),
        tot_evlu_amt=_loose(summary, "tot_evlu_amt"),
        prvs_rcdl_excc_amt=_signed(summary, "prvs_rcdl_excc_amt"),
    )


@dataclass(frozen=True)
class MarketDay:
    """A row of KIS's holiday inquiry: whether the stock market opens that day."""

    day: dt.date
    open: bool


@dataclass(frozen=True)
class Quote:
    symbol: str
    price: int
    prev_close: int
    open: int
    high: int
    low: int
    upper_limit: int
    lower_limit: int
    volume: int
    tick: int
    sign: str
    halted: bool
    vi: bool = False  # vi_cls_code Y: in a volatility interruption's call auction


@dataclass(frozen=True)
class OrderBook:
    symbol: str
    asks: list[tuple[int, int]]
    bids: list[tuple[int, int]]
    expected_price: int


class Hooks:
    """What the client reports, set once by the application that uses it (execution's app
    config alerts both): a breaker's change of state, and a replacement token refused too."""

    breaker_transition: Transition | None = None
    # (app fingerprint, use, KIS's code)
    credentials_refused: Callable[..., None] | None = None


HOOKS = Hooks()


def default_breakers(config: KisConfig) -> Breakers:
    """The breakers of this app key pair, their state in Redis (shared by every process),
    their transitions reported to HOOKS."""

    return Breakers(
        fingerprints={"query": config.query_app.fingerprint, "order": config.order_app.fingerprint},
        fail_max=config.breaker_fail_max,
        reset_s=config.breaker_reset_s,
        redis_url=settings.REDIS_URL or "",
        on_transition=_transition,
    )


def _transition(name: str, old: str, new: str, opened_at: int | None) -> None:
    if HOOKS.breaker_transition is not None:
        HOOKS.breaker_transition(name, old, new, opened_at)


def _credentials_refused(*, app: str, use: str, msg_cd: str) -> None:
    """The default of KisClient's on_credentials_refused: reported to HOOKS."""
    if HOOKS.credentials_refused is not None:
        HOOKS.credentials_refused(app=app, use=use, msg_cd=msg_cd)


def _breaker_of(use: str) -> str:
    return "order" if use == "order" else "query"


class KisClient:
    def __init__(
        self,
        config: KisConfig,
        *,
        tokens: CredentialStore | None = None,
        approvals: CredentialStore | None = None,
        vault=None,
        limiter: SharedRateLimiter | None = None,
        transport: Transport | None = None,
        breakers: Breakers | None = None,
        on_credentials_refused=_credentials_refused,
    ) -> None:
        self.config = config
        # Told (app fingerprint, use, KIS's code) when a replacement token is refused too.
        self.on_credentials_refused = on_credentials_refused
        self.breakers = breakers or default_breakers(config)
        self.tokens = tokens or CredentialStore(
            kind="token", renew_before_s=config.token_renew_before_s, vault=vault
        )
        self.approvals = approvals or CredentialStore(
            kind="approval", renew_before_s=3600, vault=vault
        )
        self.limiter = limiter or SharedRateLimiter(
            per_second=config.rate_per_second, guard_ms=config.rate_guard_ms
        )
        self.transport = transport or Transport(
            config.base_url,
            connect_timeout_s=config.connect_timeout_s,
            read_timeout_s=config.read_timeout_s,
        )

    def __repr__(self) -> str:
        return (
            f"KisClient(flavour={self.config.flavour.value}, base_url={self.config.base_url}, "
            f"query_app={self.config.query_app}, order_app={self.config.order_app})"
        )

    # --- credentials ----------------------------------------------------------------------------
    def access_token(self, app: AppCredentials) -> str:
        return self.tokens.get(app, lambda: self._issue_token(app))

    def _issue_token(self, app: AppCredentials) -> Credential:
        data = self._post_oauth(
            protocol.PATH_TOKEN,
            {"grant_type": "client_credentials", "appkey": app.appkey, "appsecret": app.appsecret},
        )
        token = data.get("access_token")
        if not token:
            raise KisProtocolError("token answer without access_token")
        expires_in = _loose(data, "expires_in") or 86_400
        return Credential(value=token, expires_at=time.time() + expires_in)

    def approval_key(self) -> str:
        """The WebSocket approval key (query app), shared like the token."""
        app = self.config.query_app

        def issue() -> Credential:
            data = self._post_oauth(
                protocol.PATH_APPROVAL,
                {
                    "grant_type": "client_credentials",
                    "appkey": app.appkey,
                    "secretkey": app.appsecret,
                },
            )
            if not data.get("approval_key"):
                raise KisProtocolError("approval answer without approval_key")
            return Credential(value=data["approval_key"], expires_at=time.time() + 86_400)

        return self.approvals.get(app, issue)

    def approval_key_refused(self, value: str) -> None:
        """KIS no longer knows this approval key: the next approval_key() issues a fresh one."""
        self.approvals.invalidate(self.config.query_app, value)

    def _post_oauth(self, path: str, payload: dict) -> dict:
        try:
            response = self.transport.request(
                "POST",
                path,
                body=json.dumps(payload).encode(),
                headers={"content-type": "application/json; charset=utf-8"},
            )
        except (ConnectFailed, ExchangeFailed) as exc:
            raise KisUnavailable(f"KIS {path} unreachable: {exc}") from None
        data = self._json(response, path)
        if response.status == 403 and data.get("error_code") == protocol.EGW_TOKEN_RATE:
            raise KisTokenRateLimited(
                data.get("error_description") or "one token a minute",
                msg_cd=protocol.EGW_TOKEN_RATE,
                http_status=403,
            )
        if response.status >= 400 or data.get("error_code"):
            raise error_for(
                msg_cd=data.get("error_code") or data.get("msg_cd") or "",
                msg1=data.get("error_description") or data.get("msg1") or "",
                http_status=response.status,
                tr_id="",
                order=False,
            )
        return data

    @staticmethod
    def _json(response, what: str) -> dict:
        try:
            return lower_keys(json.loads(response.data.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if response.status >= 500:
                raise KisUnavailable(
                    f"KIS {what} answered HTTP {response.status}", http_status=response.status
                ) from None
            raise KisProtocolError(
                f"KIS {what} answered non-JSON (HTTP {response.status})",
                http_status=response.status,
            ) from None

    # --- the request loop ---------------------------------------------------------------------
    def preflight(self, use: str = "order") -> None:
        """Before a call of `use` this thread is about to make: the token, the breaker's state
        and a rate slot, taken now (while something else is waited for) instead of in the call.
        Nothing is sent; a failure here is left for the call itself to meet."""
        try:
            app = self.config.app(use)
            self.access_token(app)
            self._ahead(_breaker_of(use), app)
        except Exception as exc:  # noqa: BLE001 - the call takes its own steps then
            logger.info("kis.preflight_failed use=%s: %s", use, type(exc).__name__)

    def _ahead(self, breaker: str, app: AppCredentials) -> None:
        """The breaker's state and a rate slot for this thread's next call, in one Redis round
        trip (the rate limiter's script reads the breaker's keys too) where they took two;
        nothing without Redis (no round trips to save)."""
        values = self.limiter.reserve_reading(app.fingerprint, self.breakers.shared_keys(breaker))
        if values is not None:
            self.breakers.prefetched(breaker, values)

    def _call(
        self,
        *,
        method: str,
        path: str,
        real_tr_id: str,
        use: str,
        params: dict | None = None,
        body: dict | None = None,
        tr_cont: str = "",
        before_write=None,
    ) -> tuple[dict, dict]:
        """One KIS REST call through the breaker of its use (KisCircuitOpen while it is
        open, without calling KIS). With the token at hand and no preflight done, the
        breaker's state and the rate slot are taken first, in one round trip (_ahead); a token
        still to be issued comes first, in the call (a slot held meanwhile would go stale)."""
        breaker = _breaker_of(use)
        app = self.config.app(use)
        if self.tokens.held(app) and not self.limiter.holds(app.fingerprint):
            try:
                self._ahead(breaker, app)
            except Exception as exc:  # noqa: BLE001 - the call takes its own steps then
                logger.info("kis.ahead_failed use=%s: %s", use, type(exc).__name__)
        return self.breakers.call(
            breaker,
            self._call_unguarded,
            method=method,
            path=path,
            real_tr_id=real_tr_id,
            use=use,
            params=params,
            body=body,
            tr_cont=tr_cont,
            before_write=before_write,
        )

    def _call_unguarded(
        self,
        *,
        method: str,
        path: str,
        real_tr_id: str,
        use: str,
        params: dict | None,
        body: dict | None,
        tr_cont: str,
        before_write=None,
    ) -> tuple[dict, dict]:
        config = self.config
        tr = protocol.tr_id(real_tr_id, config.flavour)
        app = config.app(use)
        is_order = use == "order" and method == "POST"
        replaced_token = False
        for attempt in range(config.rate_limit_retries + 1):
            # The token first: a slot taken and then held while waiting for a token would reach
            # KIS late and crowd the next second.
            token = self.access_token(app)
            self.limiter.acquire(app.fingerprint)
            headers = {
                "content-type": "application/json; charset=utf-8",
                "authorization": f"Bearer {token}",
                "appkey": app.appkey,
                "appsecret": app.appsecret,
                "tr_id": tr,
                "custtype": config.custtype,
                "tr_cont": tr_cont,
            }
            try:
                if method == "GET":
                    response = self.transport.request("GET", path, params=params, headers=headers)
                else:
                    response = self.transport.request(
                        "POST",
                        path,
                        headers=headers,
                        body=json.dumps(body).encode(),
                        before_write=before_write,
                    )
            except ConnectFailed as exc:  # nothing was sent
                raise KisUnavailable(f"KIS unreachable: {exc}", tr_id=tr) from None
            except ExchangeFailed as exc:  # it may have arrived
                if is_order:
                    raise KisAmbiguousOutcome(
                        f"order outcome unknown after {exc}: settle it against "
                        f"the daily orders inquiry, do not resend",
                        tr_id=tr,
                    ) from None
                raise KisUnavailable(f"KIS did not answer: {exc}", tr_id=tr) from None

            try:
                data = self._json(response, tr)
                if "rt_cd" not in data and response.status < 400:
                    raise KisProtocolError(
                        f"KIS {tr} answered without rt_cd", http_status=response.status, tr_id=tr
                    )
            except (KisUnavailable, KisProtocolError):
                # An answer that cannot be read says nothing of whether the order was taken.
                if is_order:
                    raise KisAmbiguousOutcome(
                        f"order outcome unknown: HTTP {response.status} without a KIS answer",
                        http_status=response.status,
                        tr_id=tr,
                    ) from None
                raise
            msg_cd = data.get("msg_cd", "")
            if data.get("rt_cd") == protocol.RT_CD_OK and response.status < 400:
                return data, {k.lower(): v for k, v in response.headers.items()}
            error = error_for(
                msg_cd=msg_cd,
                msg1=data.get("msg1", ""),
                http_status=response.status,
                tr_id=tr,
                order=is_order,
            )
            if isinstance(error, KisRateLimited) and attempt < config.rate_limit_retries:
                backoff = 0.05 * (2**attempt) * (1 + random.random())
                logger.info(
                    "kis.rate_limited tr_id=%s attempt=%s backoff_s=%.3f", tr, attempt, backoff
                )
                time.sleep(backoff)
                continue
            if isinstance(error, (KisTokenExpired, KisTokenInvalid)):
                if not replaced_token:
                    self.tokens.invalidate(app, token)
                    replaced_token = True
                    continue
                self._refused(app, use, error)
            raise error
        raise KisRateLimited("KIS per-second limit still exceeded after retries", tr_id=tr)

    def _refused(self, app: AppCredentials, use: str, error: KisError) -> None:
        if self.on_credentials_refused is None:
            return
        try:
            self.on_credentials_refused(app=app.fingerprint, use=use, msg_cd=error.msg_cd)
        except Exception:  # noqa: BLE001 - an alert that fails never changes the call's error
            logger.exception("kis.credentials_alert_failed use=%s", use)

    def _pages(self, *, path: str, real_tr_id: str, params: dict) -> Iterator[dict]:
        tr_cont, fk, nk = protocol.TR_CONT_FIRST, "", ""
        for _ in range(MAX_PAGES):
            data, headers = self._call(
                method="GET",
                path=path,
                real_tr_id=real_tr_id,
                use="query",
                params=params | {"CTX_AREA_FK100": fk, "CTX_AREA_NK100": nk},
                tr_cont=tr_cont,
            )
            yield data
            if headers.get("tr_cont", "") not in protocol.TR_CONT_MORE:
                return
            tr_cont = protocol.TR_CONT_NEXT
            fk, nk = data.get("ctx_area_fk100", ""), data.get("ctx_area_nk100", "")
        raise KisProtocolError(f"more than {MAX_PAGES} pages from {path}")

    def _account(self) -> dict:
        return {"CANO": self.config.cano, "ACNT_PRDT_CD": self.config.acnt_prdt_cd}

    # --- orders -------------------------------------------------------------------------------
    @property
    def send_window_s(self) -> float:
        """How long after its write an order may still reach KIS: the connect and read timeouts
        and a margin (an order's claim, execution/services/claim.py)."""
        return self.config.connect_timeout_s + self.config.read_timeout_s + 5.0

    def order_cash(
        self,
        *,
        side: str,
        symbol: str,
        qty: int,
        price: int | None,
        venue: str = protocol.EXCG_KRX,
        before_write=None,
    ) -> OrderAck:
        """A cash order to `venue` (protocol.EXCHANGES): limit at `price`, or market when
        `price` is None (not on Nextrade, which takes none). `before_write` is called right
        before each write of the request (the order's claim); what it raises
        (KisWriteWithheld) comes back with nothing sent."""
        if side not in ("BUY", "SELL"):
            raise ValueError(f"side is BUY or SELL, got {side!r}")
        if venue not in protocol.EXCHANGES:
            raise ValueError(f"venue is one of {protocol.EXCHANGES}, got {venue!r}")
        if venue != protocol.EXCG_KRX and self.config.flavour is protocol.Flavour.PAPER:
            raise ValueError(f"a paper account trades on KRX only, not {venue}")
        if venue == protocol.EXCG_NXT and price is None:
            raise ValueError("Nextrade takes no market order")
        body = self._account() | {
            "PDNO": symbol,
            "ORD_DVSN": protocol.ORD_DVSN_MARKET if price is None else protocol.ORD_DVSN_LIMIT,
            "ORD_QTY": str(qty),
            "ORD_UNPR": "0" if price is None else str(price),
            "EXCG_ID_DVSN_CD": venue,
        }
        data, _ = self._call(
            method="POST",
            path=protocol.PATH_ORDER_CASH,
            real_tr_id=protocol.TR_BUY if side == "BUY" else protocol.TR_SELL,
            use="order",
            body=body,
            before_write=before_write,
        )
        out = data.get("output")
        return order_ack_from(out if isinstance(out, dict) else {}, new_order=True)

    def order_cancel(self, *, org_no: str, odno: str, qty: int | None = None) -> OrderAck:
        """Cancel all that remains of an order (qty None) or `qty` of it."""
        body = self._account() | {
            "KRX_FWDG_ORD_ORGNO": org_no,
            "ORGN_ODNO": odno,
            "ORD_DVSN": protocol.ORD_DVSN_LIMIT,
            "RVSE_CNCL_DVSN_CD": protocol.RVSE_CNCL_CANCEL,
            "ORD_QTY": "0" if qty is None else str(qty),
            "ORD_UNPR": "0",
            "QTY_ALL_ORD_YN": "Y" if qty is None else "N",
        }
        return self._rvsecncl(body)

    def order_modify(
        self, *, org_no: str, odno: str, price: int, qty: int | None = None
    ) -> OrderAck:
        """Re-price all that remains of an order (qty None) or `qty` of it."""
        body = self._account() | {
            "KRX_FWDG_ORD_ORGNO": org_no,
            "ORGN_ODNO": odno,
            "ORD_DVSN": protocol.ORD_DVSN_LIMIT,
            "RVSE_CNCL_DVSN_CD": protocol.RVSE_CNCL_MODIFY,
            "ORD_QTY": "0" if qty is None else str(qty),
            "ORD_UNPR": str(price),
            "QTY_ALL_ORD_YN": "Y" if qty is None else "N",
        }
        return self._rvsecncl(body)

    def _rvsecncl(self, body: dict) -> OrderAck:
        data, _ = self._call(
            method="POST",
            path=protocol.PATH_ORDER_RVSECNCL,
            real_tr_id=protocol.TR_RVSECNCL,
            use="order",
            body=body,
        )
        out = data.get("output")
        return order_ack_from(out if isinstance(out, dict) else {}, new_order=False)

    # --- inquiries ----------------------------------------------------------------------------
    def daily_orders(
        self,
        *,
        start: dt.date,
        end: dt.date,
        side: str = "ALL",
        filled: str = "ALL",
        symbol: str = "",
        odno: str = "",
        keep_bad: bool = False,
    ) -> list[DailyOrder | BadDailyOrder]:
        """Orders and their fills between two dates (at most three months), every page.

        A row this client cannot read raises KisProtocolError (naming the field); with
        `keep_bad` it is kept as a BadDailyOrder in its place instead, so that the other rows
        can still be used and the bad one's order set aside (services/quarantine.py)."""
        sides = {
            "ALL": protocol.SLL_BUY_ALL,
            "SELL": protocol.SLL_BUY_SELL,
            "BUY": protocol.SLL_BUY_BUY,
        }
        ccld = {
            "ALL": protocol.CCLD_ALL,
            "FILLED": protocol.CCLD_FILLED,
            "UNFILLED": protocol.CCLD_UNFILLED,
        }
        params = self._account() | {
            "INQR_STRT_DT": start.strftime("%Y%m%d"),
            "INQR_END_DT": end.strftime("%Y%m%d"),
            "SLL_BUY_DVSN_CD": sides[side],
            "INQR_DVSN": "00",
            "PDNO": symbol,
            "CCLD_DVSN": ccld[filled],
            "ORD_GNO_BRNO": "",
            "ODNO": odno,
            "INQR_DVSN_3": "00",
            "INQR_DVSN_1": "",
            # Every venue's orders (a paper account has KRX's only, and takes no ALL).
            "EXCG_ID_DVSN_CD": protocol.EXCG_KRX
            if self.config.flavour is protocol.Flavour.PAPER
            else protocol.EXCG_ALL,
        }
        orders: list[DailyOrder | BadDailyOrder] = []
        for page in self._pages(
            path=protocol.PATH_DAILY_CCLD, real_tr_id=protocol.TR_DAILY_CCLD, params=params
        ):
            rows = page.get("output1") or []
            if not isinstance(rows, list):
                raise KisProtocolError(
                    f"KIS daily orders output1 is a {type(rows).__name__}, not a list"
                )
            for r in rows:
                try:
                    if not isinstance(r, dict):
                        raise KisProtocolError(f"KIS daily orders row is a {type(r).__name__}")
                    orders.append(daily_order_from(r))
                except KisProtocolError as exc:
                    if not keep_bad:
                        raise
                    bad = bad_daily_order(r, exc)
                    logger.error(
                        "kis.daily_order_unreadable odno=%s: %s", bad.odno or "?", bad.reason
                    )
                    orders.append(bad)
        return orders

    def balance(self) -> Balance:
        """Holdings (every page) and the cash summary."""
        params = self._account() | {
            "AFHR_FLPR_YN": "N",
            "OFL_YN": "",
            "INQR_DVSN": "02",
            "UNPR_DVSN": "01",
            "FUND_STTL_ICLD_YN": "N",
            "FNCG_AMT_AUTO_RDPT_YN": "N",
            "PRCS_DVSN": "00",
        }
        holdings: list[Holding] = []
        summary: dict = {}
        for page in self._pages(
            path=protocol.PATH_BALANCE, real_tr_id=protocol.TR_BALANCE, params=params
        ):
            rows = page.get("output1") or []
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise KisProtocolError("KIS balance output1 is not a list of holdings")
            holdings.extend(holding_from(r) for r in rows)
            output2 = page.get("output2") or []
            if isinstance(output2, dict):
                output2 = [output2]
            if output2 and isinstance(output2[0], dict):
                summary = output2[0]
        return balance_from(holdings, summary)

    def price(self, symbol: str) -> Quote:
        data, _ = self._call(
            method="GET",
            path=protocol.PATH_PRICE,
            real_tr_id=protocol.TR_PRICE,
            use="query",
            params={"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": symbol},
        )
        o = data.get("output") or {}
        return Quote(
            symbol=symbol,
            price=_count(o, "stck_prpr"),
            prev_close=_count(o, "stck_sdpr"),
            open=_loose(o, "stck_oprc"),
            high=_loose(o, "stck_hgpr"),
            low=_loose(o, "stck_lwpr"),
            upper_limit=_count(o, "stck_mxpr"),
            lower_limit=_count(o, "stck_llam"),
            volume=_loose(o, "acml_vol"),
            tick=_loose(o, "aspr_unit"),
            sign=o.get("prdy_vrss_sign", ""),
            halted=o.get("temp_stop_yn") == "Y",
            vi=o.get("vi_cls_code") == "Y",
        )

    def market_days(self, *, start: dt.date) -> list[MarketDay]:
        """KIS's holiday inquiry (real accounts only; KIS asks for one call a day): from `start`,
        whether the stock market opens each day (opnd_yn). A row without a readable date or
        opnd_yn is a protocol error: a calendar is not checked against a guess."""
        data, _ = self._call(
            method="GET",
            path=protocol.PATH_HOLIDAY,
            real_tr_id=protocol.TR_HOLIDAY,
            use="query",
            params={"BASS_DT": f"{start:%Y%m%d}", "CTX_AREA_NK": "", "CTX_AREA_FK": ""},
        )
        rows = data.get("output")
        if not isinstance(rows, list):
            raise KisProtocolError("the holiday inquiry's answer has no output list")
        days = []
        for raw in rows:
            row = lower_keys(raw) if isinstance(raw, dict) else {}
            try:
                day = dt.datetime.strptime(str(row.get("bass_dt", "")), "%Y%m%d").date()
            except ValueError:
                raise KisProtocolError(
                    f"a holiday row without a date: {row.get('bass_dt')!r}"
                ) from None
            opens = row.get("opnd_yn")
            if opens not in ("Y", "N"):
                raise KisProtocolError(f"the holiday row of {day} lacks opnd_yn ({opens!r})")
            days.append(MarketDay(day=day, open=opens == "Y"))
        return days

    def order_book(self, symbol: str) -> OrderBook:
        data, _ = self._call(
            method="GET",
            path=protocol.PATH_ASKING_PRICE,
            real_tr_id=protocol.TR_ASKING_PRICE,
            use="query",
            params={"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": symbol},
        )
        o1, o2 = data.get("output1") or {}, data.get("output2") or {}
        asks = [(_loose(o1, f"askp{i}"), _loose(o1, f"askp_rsqn{i}")) for i in range(1, 11)]
        bids = [(_loose(o1, f"bidp{i}"), _loose(o1, f"bidp_rsqn{i}")) for i in range(1, 11)]
        return OrderBook(
            symbol=symbol,
            asks=[a for a in asks if a[0]],
            bids=[b for b in bids if b[0]],
            expected_price=_loose(o2, "antc_cnpr"),
        )


__all__ = [
    "KisClient",
    "KisError",
    "OrderAck",
    "DailyOrder",
    "BadDailyOrder",
    "Holding",
    "MarketDay",
    "Balance",
    "Quote",
    "OrderBook",
    "lower_keys",
    "daily_order_from",
    "holding_from",
    "order_ack_from",
    "balance_from",
]
