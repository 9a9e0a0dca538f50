"""What fills cost beyond their price (execution/costs.py): the rule as pure logic, then the
ledger keeping it per fill and per position on PostgreSQL."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from execution import services
from execution.costs import CostRates, fill_costs
from execution.models import Fill, Position
from market.models import Symbol
from tests.support.ledger import fill, key, open_position, submit

RATES = CostRates(
    fee=Decimal("0.000140527"), sell_tax=Decimal("0.0020"), etp_fee=Decimal("0.000146527")
)


def test_a_fee_on_every_fill_and_the_tax_on_a_sell_each_cut_to_the_won():
    assert fill_costs("BUY", 7_000_000, RATES) == (983, 0)  # 983.689 KRW
    assert fill_costs("SELL", 7_000_000, RATES) == (983, 14_000)
    assert fill_costs("SELL", 6_999, RATES) == (0, 13)  # 0.98 and 13.998
    assert fill_costs("SELL", 1, RATES) == (0, 0)


def test_an_etf_or_etn_pays_its_own_fee_and_no_tax_on_a_sale():
    assert fill_costs("BUY", 7_000_000, RATES, etp=True) == (1_025, 0)  # 1,025.689 KRW
    assert fill_costs("SELL", 7_000_000, RATES, etp=True) == (1_025, 0)


@pytest.mark.parametrize("fee, tax", [("-0.0001", "0"), ("0", "0.01"), ("0.02", "0")])
def test_rates_out_of_range_are_refused(fee, tax):
    with pytest.raises(ValueError):
        CostRates(fee=Decimal(fee), sell_tax=Decimal(tax), etp_fee=Decimal(fee))


@pytest.mark.parametrize("value", ["abc", "-0.001", "0.5", "NaN", "Infinity"])
def test_a_bad_rate_in_the_environment_stops_the_settings(value, monkeypatch):
    from aegis import settings

    monkeypatch.setenv("AEGIS_FEE_RATE", value)
    with pytest.raises(ImproperlyConfigured, match="AEGIS_FEE_RATE"):
        settings._rate("AEGIS_FEE_RATE", "0.000140527")


@pytest.mark.django_db(transaction=True)
def test_the_ledger_keeps_each_fills_costs_and_each_positions_sum(new_symbol, settings):
    settings.AEGIS_FEE_RATE, settings.AEGIS_SELL_TAX_RATE = RATES.fee, RATES.sell_tax
    position = open_position(new_symbol(), 100, 70_000)  # a buy of 7,000,000 KRW
    exit_ = services.exit_intent_open(
        position_id=position.pk,
        qty=100,
        limit_price=71_000,
        intent_type="MANUAL",
        idempotency_key=key(),
    )
    order = submit(exit_)
    fill(order, 60, 71_000)  # 4,260,000 KRW
    fill(order, 40, 71_000)  # 2,840,000 KRW
    fills = list(Fill.objects.filter(order__position=position).order_by("pk"))
    assert [(f.fee, f.tax) for f in fills] == [(983, 0), (598, 8_520), (399, 5_680)]
    position = Position.objects.get(pk=position.pk)
    assert position.status == Position.Status.CLOSED
    assert position.realized_pnl == 100_000  # before costs
    assert position.costs == 983 + 598 + 8_520 + 399 + 5_680


@pytest.mark.django_db(transaction=True)
def test_the_ledger_charges_an_etf_no_tax_from_the_master_files_group(new_symbol, settings):
    settings.AEGIS_FEE_RATE, settings.AEGIS_SELL_TAX_RATE = RATES.fee, RATES.sell_tax
    settings.AEGIS_ETP_FEE_RATE = RATES.etp_fee
    etf, stock = new_symbol(), new_symbol()
    Symbol.objects.create(code=etf, name="KODEX 200", market="KOSPI", group="EF")
    Symbol.objects.create(code=stock, name="삼성전자", market="KOSPI", group="ST")
    for symbol, costs in ((etf, [(1_025, 0), (1_040, 0)]), (stock, [(983, 0), (997, 14_200)])):
        position = open_position(symbol, 100, 70_000)
        order = submit(
            services.exit_intent_open(
                position_id=position.pk,
                qty=100,
                limit_price=71_000,
                intent_type="MANUAL",
                idempotency_key=key(),
            )
        )
        fill(order, 100, 71_000)
        fills = Fill.objects.filter(order__position=position).order_by("pk")
        assert [(f.fee, f.tax) for f in fills] == costs, symbol
