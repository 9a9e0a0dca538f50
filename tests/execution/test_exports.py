"""Trades and daily P&L as CSV from the admin's fill list (execution/exports.py)."""

import csv
import io
from decimal import Decimal

import pytest

from execution import services
from execution.models import Fill
from tests.support.ledger import fill, key, open_position, submit

pytestmark = pytest.mark.django_db(transaction=True)


def rows(response) -> list[dict]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")  # a spreadsheet reads it as UTF-8
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_trades_and_daily_pnl_export_with_fees_and_tax(admin_client, new_symbol, settings):
    settings.AEGIS_FEE_RATE, settings.AEGIS_SELL_TAX_RATE = Decimal("0.0001"), Decimal("0.002")
    position = open_position(new_symbol(), 10, 70_000)  # 700,000 KRW: fee 70
    sell = submit(
        services.exit_intent_open(
            position_id=position.pk,
            qty=10,
            limit_price=72_000,
            intent_type="EXIT_TAKE_PROFIT",
            idempotency_key=key(),
        )
    )
    fill(sell, 10, 72_000)  # 720,000 KRW: fee 72, tax 1,440, P&L +20,000
    ids = list(Fill.objects.filter(order__position=position).values_list("pk", flat=True))
    url = "/admin/execution/fill/"
    trades = rows(admin_client.post(url, {"action": "export_trades", "_selected_action": ids}))
    assert [(t["side"], t["qty"], t["amount"], t["fee"], t["tax"]) for t in trades] == [
        ("BUY", "10", "700000", "70", "0"),
        ("SELL", "10", "720000", "72", "1440"),
    ]
    assert trades[1]["realized_pnl"] == "20000" and trades[1]["realized_pnl_net"] == "18488"
    assert trades[1]["intent_type"] == "EXIT_TAKE_PROFIT" and trades[0]["realized_pnl"] == ""
    assert len(trades[0]["filled_at_kst"]) == 19  # YYYY-MM-DD HH:MM:SS
    [day] = rows(admin_client.post(url, {"action": "export_daily_pnl", "_selected_action": ids}))
    assert (day["fills"], day["bought"], day["sold"], day["fees"], day["tax"]) == (
        "2",
        "700000",
        "720000",
        "142",
        "1440",
    )
    assert (day["realized_pnl"], day["net"]) == ("20000", "18418")  # net of both fills' costs


def test_intent_and_order_lists_show_the_live_ones_first_then_the_newest(admin_client, new_symbol):
    """A live flatten intent sat 13th of 16 in a list ordered by UUID: live rows come first."""
    position = open_position(new_symbol(), 10, 70_000)  # its entry: ORDERED, its order FILLED
    waiting = services.exit_intent_open(
        position_id=position.pk,
        qty=4,
        limit_price=72_000,
        intent_type="MANUAL",
        idempotency_key=key(),
    )  # NEW
    sent = submit(
        services.exit_intent_open(
            position_id=position.pk,
            qty=3,
            limit_price=72_000,
            intent_type="MANUAL",
            idempotency_key=key(),
        )
    )  # its order SUBMITTED; the intent ORDERED
    intents = admin_client.get("/admin/execution/orderintent/").context["cl"].result_list
    assert intents[0].pk == waiting.pk
    assert [i.status for i in intents[1:]] == ["ORDERED", "ORDERED"]
    assert intents[1].created_at >= intents[2].created_at
    orders = admin_client.get("/admin/execution/order/").context["cl"].result_list
    assert [o.status for o in orders] == ["SUBMITTED", "FILLED"] and orders[0].pk == sent.pk


def test_an_intents_order_status_and_an_orders_average_fill_price(admin_client, new_symbol):
    position = open_position(new_symbol(), 10, 70_000)
    sell = submit(
        services.exit_intent_open(
            position_id=position.pk,
            qty=10,
            limit_price=72_000,
            intent_type="EXIT_TAKE_PROFIT",
            idempotency_key=key(),
        )
    )
    fill(sell, 4, 72_000)
    fill(sell, 6, 72_500)  # 10 at 72,300 on average
    intents = admin_client.get("/admin/execution/orderintent/").context["cl"].result_list
    mine = next(i for i in intents if i.pk == sell.intent_id)
    assert (mine.status, mine.order_status_db) == ("ORDERED", "FILLED")
    html = admin_client.get(f"/admin/execution/order/?q={position.symbol}").content.decode()
    assert "72,300" in html
