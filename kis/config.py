"""KIS connection settings. App secrets never appear in reprs, logs or exceptions: a credential
prints as its fingerprint.
"""

import hashlib
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .protocol import PAPER_BASE_URL, PAPER_WS_URL, REAL_BASE_URL, REAL_WS_URL, Flavour

# Requests per second per app key (KIS.md: about 20 real, about 2 paper; UNCONFIRMED).
DEFAULT_RATE = {Flavour.REAL: 20, Flavour.PAPER: 2}


@dataclass(frozen=True)
class AppCredentials:
    """One KIS app: its key and secret. Prints as a fingerprint, never the values."""

    appkey: str = field(repr=False)
    appsecret: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.appkey.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"AppCredentials(fingerprint={self.fingerprint})"

    __str__ = __repr__


@dataclass(frozen=True)
class KisConfig:
    flavour: Flavour
    base_url: str
    ws_url: str
    cano: str
    acnt_prdt_cd: str
    query_app: AppCredentials
    order_app: AppCredentials
    hts_id: str = ""
    custtype: str = "P"
    rate_per_second: int = 20
    # The rate window is this much longer than a second: the spread between taking a slot and
    # the request reaching KIS must not put two slots into one of KIS's seconds.
    rate_guard_ms: int = 50
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 5.0
    rate_limit_retries: int = 3
    token_renew_before_s: int = 3600
    breaker_fail_max: int = 5
    breaker_reset_s: float = 30.0

    def app(self, use: str) -> AppCredentials:
        """The app key for a use: "query" (prices, holdings) or "order" (submit, cancel)."""
        if use == "order":
            return self.order_app
        if use == "query":
            return self.query_app
        raise ValueError(f"unknown app use {use!r}")

    @classmethod
    def from_settings(cls) -> "KisConfig":
        kis = settings.KIS
        env = kis["ENV"]
        if env not in ("real", "paper", "simulator"):
            raise ImproperlyConfigured("KIS_ENV must be real, paper or simulator.")
        flavour = Flavour(kis.get("FLAVOUR") or ("real" if env == "real" else "paper"))
        if env == "simulator" and not (kis["BASE_URL"] and kis["WS_URL"]):
            raise ImproperlyConfigured(
                "KIS_ENV=simulator needs KIS_BASE_URL and KIS_WS_URL (the simulator's addresses)."
            )
        account = kis["ACCOUNT"]
        cano, _, prdt = account.partition("-")
        if not (len(cano) == 8 and cano.isdigit() and len(prdt) == 2 and prdt.isdigit()):
            raise ImproperlyConfigured(
                "KIS_ACCOUNT must look like 12345678-01 (CANO-ACNT_PRDT_CD)."
            )
        query = AppCredentials(kis["QUERY_APP_KEY"], kis["QUERY_APP_SECRET"])
        order = AppCredentials(
            kis["ORDER_APP_KEY"] or kis["QUERY_APP_KEY"],
            kis["ORDER_APP_SECRET"] or kis["QUERY_APP_SECRET"],
        )
        if not (query.appkey and query.appsecret):
            raise ImproperlyConfigured("Set KIS_QUERY_APP_KEY and KIS_QUERY_APP_SECRET.")
        return cls(
            flavour=flavour,
            base_url=kis["BASE_URL"]
            or (REAL_BASE_URL if flavour is Flavour.REAL else PAPER_BASE_URL),
            ws_url=kis["WS_URL"] or (REAL_WS_URL if flavour is Flavour.REAL else PAPER_WS_URL),
            cano=cano,
            acnt_prdt_cd=prdt,
            query_app=query,
            order_app=order,
            hts_id=kis["HTS_ID"],
            rate_per_second=int(kis.get("RATE_PER_SECOND") or DEFAULT_RATE[flavour]),
            breaker_fail_max=int(kis.get("BREAKER_FAIL_MAX") or 5),
            breaker_reset_s=float(kis.get("BREAKER_RESET_S") or 30.0),
        )
