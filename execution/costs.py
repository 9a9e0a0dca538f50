"""What a fill costs beyond its price: the broker's fee on every fill and the transaction tax on
every sell, in KRW, each cut to the won below (as a fee or tax in won is paid).

The rates are settings (AEGIS_FEE_RATE, AEGIS_ETP_FEE_RATE, AEGIS_SELL_TAX_RATE), fractions of
the amount traded. An exchange-traded product (an ETF or ETN: its security group in KRX's master
file, market.Symbol.group) pays the ETP fee and no transaction tax on a sale; a symbol whose
group is not loaded (`manage.py symbols_load`) is taken for a stock. Their defaults, as
published for 2026:
- fee 0.0140527 % (0.000140527): KIS's online (BanKIS) rate for KOSPI, KOSDAQ and KONEX stocks,
  exchange and depository charges included; an ETF or ETN pays 0.0146527 % (0.000146527), an
  account opened at a branch more. Read in a summary of KIS's fee table
  (https://bullroit.net, 한국투자증권 수수료 총정리); KIS's own page was not read.
- sell tax 0.20 % (0.0020): for sales from 1 January 2026, the securities transaction tax on
  KOSPI is 0.05 % with the special tax for rural development of 0.15 %, and on KOSDAQ 0.20 %
  (the Ministry of Economy and Finance's amendment of the decree, announced 1 December 2025;
  read in news copies: http://livein.co.kr/bbs/board.php?bo_table=n04&wr_id=242737). The sale
  of a domestic ETF or ETN bears none (the Securities Transaction Tax Act's exemption).
How KIS rounds a day's fees over several fills of one order is not published (UNCONFIRMED):
Aegis cuts each fill's, so its costs may differ from KIS's statement by a won per fill.
"""

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings

from .models import Side


@dataclass(frozen=True)
class CostRates:
    fee: Decimal  # of the amount, on every fill
    sell_tax: Decimal  # of the amount, on a sell
    etp_fee: Decimal  # of the amount, on every fill of an ETF or ETN (which pays no sell tax)

    def __post_init__(self) -> None:
        for name in ("fee", "sell_tax", "etp_fee"):
            rate = getattr(self, name)
            if not isinstance(rate, Decimal) or not Decimal(0) <= rate < Decimal("0.01"):
                raise ValueError(f"the {name} rate must be a Decimal from 0 to 0.01, not {rate!r}")


def cost_rates() -> CostRates:
    return CostRates(
        fee=settings.AEGIS_FEE_RATE,
        sell_tax=settings.AEGIS_SELL_TAX_RATE,
        etp_fee=settings.AEGIS_ETP_FEE_RATE,
    )


def fill_costs(side: str, amount: int, rates: CostRates, *, etp: bool = False) -> tuple[int, int]:
    """(fee, tax) in KRW of a fill of `amount` KRW on `side`; `etp`: of an ETF or ETN."""
    fee_rate = rates.etp_fee if etp else rates.fee
    fee = int((Decimal(amount) * fee_rate).to_integral_value(rounding=ROUND_FLOOR))
    tax = (
        int((Decimal(amount) * rates.sell_tax).to_integral_value(rounding=ROUND_FLOOR))
        if side == Side.SELL and not etp
        else 0
    )
    return fee, tax
